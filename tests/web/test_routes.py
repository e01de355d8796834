"""The web side over a real server on 127.0.0.1 and a store seeded through the monitor."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest
from aiohttp import web

from bot.metrics import Metrics
from bot.web.app import WebServer
from bot.web.data import StoreStatusData
from bot.web.settings import WebSettings
from tests.web.helpers import EVIL_TITLE, SECRET_CHAT, SECRET_USER, Seeded, statuses

SAMPLES = Path(__file__).parent / "samples"
ATOM = "{http://www.w3.org/2005/Atom}"


async def get(http: aiohttp.ClientSession, path: str, **kw: Any) -> tuple[int, str, Any]:
    async with http.get(path, **kw) as r:
        return r.status, await r.text(), r.headers


def no_secrets(text: str) -> None:
    assert SECRET_USER not in text and SECRET_CHAT not in text
    assert "kaggle will not start" not in text  # a report's text is not shown either


# -- the page -------------------------------------------------------------------------------------
async def test_index_shows_verdicts_evidence_history_and_escapes(
    http: aiohttp.ClientSession, seeded: Seeded
) -> None:
    status, html, headers = await get(http, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    # verdicts with their evidence and age
    assert '<span class="pill s-down">down</span>' in html
    assert "2 platforms down: Kaggle, GitHub Codespaces" in html
    assert "HTTP 503 from 127.0.0.1 after 3 tries" in html and "checked just now" in html
    # uptime and the 90-day bar, with the old incident's day linked to its panel
    assert "24 h 66.7%" in html  # colab: 4 of 6 checks up today
    assert html.count('class="bar"') == 4  # one per alive platform
    day = seeded.old_incident_day
    assert f'href="#colab-{day}"' in html and f'id="colab-{day}"' in html
    assert "HTTP 502 from colab" in html
    # community reports as counts, never names
    assert "2 people in 2 chats reported problems" in html
    no_secrets(html)
    # where to go instead, for the platform that is down (the /alternatives ranking)
    kaggle = html.split('id="p-kaggle"')[1].split("</article>")[0]
    assert "Where to go instead" in kaggle and '<a href="/p/binder">Binder</a>' in kaggle
    assert "Where to go instead" not in html.split('id="p-binder"')[1].split("</article>")[0]
    # retired with successors (one a known platform, linked by its name)
    assert (
        'retired on 2021-01-15. Go to: <a href="/p/colab">Google Colab</a>, VS Code Jupyter' in html
    )
    # the official feed's title is escaped, its javascript: link dropped
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)" in html
    assert "javascript:" not in html


async def test_index_is_gzip_for_slow_connections_and_small(http: aiohttp.ClientSession) -> None:
    async with http.get("/", headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as r:
        raw = await r.read()
        assert r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"]
    html = gzip.decompress(raw)
    assert len(html) < 100_000 and len(raw) < len(html) / 3
    async with http.get("/", headers={"Accept-Encoding": "identity"}) as r:
        assert "Content-Encoding" not in r.headers and await r.read() == html


async def test_platform_page_chart_incidents_and_span(http: aiohttp.ClientSession) -> None:
    status, html, _ = await get(http, "/p/colab")
    assert status == 200
    assert '<svg class="chart"' in html and '<polyline class="line" points="' in html
    assert 'class="f-down"' in html  # the outage marked on the chart
    assert "Days with incidents" in html and "<details" in html
    assert "from <time" in html and "10 min" in html  # start, end, duration
    assert "check your connection" in html  # up here, no reports: probably local
    status, week, _ = await get(http, "/p/colab?span=7d")
    assert status == 200 and "last 7 days" in week
    status, _, _ = await get(http, "/p/azure")
    assert status == 200


async def test_incidents_page_lists_ongoing_and_past(http: aiohttp.ClientSession) -> None:
    status, html, _ = await get(http, "/incidents")
    assert status == 200
    ongoing, past = html.split('id="incidents"')
    assert "Kaggle</a>: down" in ongoing and "HTTP 502 from colab" in past
    assert past.count("<li class=") == 2  # colab: today and 10 days ago
    no_secrets(html)


async def test_alias_redirects_unknown_suggests(http: aiohttp.ClientSession) -> None:
    async with http.get("/p/gc", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/p/colab"
    async with http.get("/api/v1/platforms/GC", allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/api/v1/platforms/colab"
    status, html, _ = await get(http, "/p/colabb")
    assert status == 404 and 'Did you mean <a href="/p/colab">colab</a>' in html
    assert "colabb" not in html  # never echoed


# -- the Statuspage-shaped API --------------------------------------------------------------------
def keys_like(ours: dict[str, Any], sample: dict[str, Any], where: str) -> None:
    missing = set(sample) - set(ours)
    assert not missing, f"{where}: missing {sorted(missing)}"


async def test_summary_has_statuspage_shape(http: aiohttp.ClientSession) -> None:
    status, text, headers = await get(http, "/api/v2/summary.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert headers["Access-Control-Allow-Origin"] == "*"
    body = json.loads(text)
    sample = json.loads((SAMPLES / "statuspage_api_docs_example_summary.json").read_text())
    keys_like(body, sample, "summary")
    keys_like(body["page"], sample["page"], "page")
    keys_like(body["status"], sample["status"], "status")
    keys_like(body["components"][0], sample["components"][0], "component")
    keys_like(body["incidents"][0], sample["incidents"][0], "incident")
    keys_like(
        body["incidents"][0]["incident_updates"][0],
        sample["incidents"][0]["incident_updates"][0],
        "incident update",
    )
    assert body["status"] == {"indicator": "major", "description": "Major System Outage"}
    assert statuses(body) == {
        "colab": "operational",
        "kaggle": "major_outage",
        "codespaces": "major_outage",
        "binder": "operational",
    }  # the retired platform is no component
    assert {i["name"] for i in body["incidents"]} == {"Kaggle: down", "GitHub Codespaces: down"}
    assert all(
        i["status"] == "investigating" and i["resolved_at"] is None for i in body["incidents"]
    )
    assert body["scheduled_maintenances"] == []
    no_secrets(text)


async def test_components_and_incidents(http: aiohttp.ClientSession) -> None:
    comps = json.loads((await get(http, "/api/v2/components.json"))[1])
    sample = json.loads((SAMPLES / "github_components_2024-09-17.json").read_text())
    keys_like(comps, sample, "components.json")
    keys_like(comps["components"][0], sample["components"][0], "component")
    assert [c["position"] for c in comps["components"]] == [1, 2, 3, 4]

    body = json.loads((await get(http, "/api/v2/incidents.json"))[1])
    sample = json.loads((SAMPLES / "github_incidents_2024-09-16.json").read_text())
    keys_like(body, sample, "incidents.json")
    keys_like(body["incidents"][0], sample["incidents"][0], "incident")
    keys_like(
        body["incidents"][0]["incident_updates"][0],
        sample["incidents"][0]["incident_updates"][0],
        "incident update",
    )
    by_name = [(i["name"], i["status"]) for i in body["incidents"]]
    assert by_name.count(("Google Colab: down", "resolved")) == 2  # today's and 10 days ago
    recovered = next(i for i in body["incidents"] if i["status"] == "resolved")
    assert [u["status"] for u in recovered["incident_updates"]] == ["resolved", "investigating"]
    assert recovered["resolved_at"] > recovered["started_at"]
    assert recovered["components"][0]["id"] == "colab"
    evil = next(i for i in body["incidents"] if i["name"].startswith("GitHub"))
    assert evil["incident_updates"][-1]["body"].startswith(EVIL_TITLE)  # JSON carries it as data
    assert evil["shortlink"].startswith("http")  # the javascript: link is not passed on

    one = json.loads((await get(http, "/api/v2/incidents.json?limit=1"))[1])
    assert len(one["incidents"]) == 1
    unresolved = json.loads((await get(http, "/api/v2/incidents/unresolved.json"))[1])
    assert {i["status"] for i in unresolved["incidents"]} == {"investigating"}


async def test_v1_platform_has_full_evidence(http: aiohttp.ClientSession) -> None:
    status, text, _ = await get(http, "/api/v1/platforms/kaggle")
    assert status == 200
    body = json.loads(text)
    assert body["status"] == "down" and body["statuspage_status"] == "major_outage"
    (ev,) = body["evidence"]
    assert ev["line"] == "HTTP 503 from 127.0.0.1 after 3 tries" and ev["signal"] == "down"
    assert ev["kind"] == "http" and ev["official"] is False and ev["failed_step"] == "http"
    assert body["community_reports"]["people"] == 2 and body["community_reports"]["chats"] == 2
    assert len(body["days"]) == 90 and body["days"][-1]["status"] == "down"
    assert body["incidents"][0]["ongoing"] is True
    assert [a["id"] for a in body["alternatives"]][:2] == ["binder", "colab"]
    no_secrets(text)
    listing = json.loads((await get(http, "/api/v1/platforms"))[1])
    assert [p["id"] for p in listing["platforms"]][-1] == "azure"
    azure = json.loads((await get(http, "/api/v1/platforms/azure"))[1])
    assert azure["retired"] is True
    assert azure["successors"] == [
        {"name": "Google Colab", "id": "colab"},
        {"name": "VS Code Jupyter", "id": None},
    ]


async def test_absolute_links_use_the_public_url_or_a_sane_host(
    seeded: Seeded, server: WebServer, http: aiohttp.ClientSession
) -> None:
    body = json.loads((await get(http, "/api/v2/summary.json", headers={"Host": 'a"b<c>'}))[1])
    assert body["page"]["url"] == "http://localhost/"  # a malformed Host is never echoed
    data = StoreStatusData(seeded.store, seeded.platforms, seeded.settings, clock=seeded.clock)
    settings = WebSettings(host="127.0.0.1", port=0, public_url="https://status.example.org")
    srv = WebServer(settings, data, metrics=Metrics())
    await srv.start()
    try:
        async with aiohttp.ClientSession(srv.url) as h2:
            body = json.loads((await get(h2, "/api/v2/summary.json"))[1])
            feed_text = (await get(h2, "/feed.atom", headers={"Host": "attacker.example"}))[1]
    finally:
        await srv.stop()
    assert body["page"]["url"] == "https://status.example.org/"
    assert "attacker.example" not in feed_text
    assert "https://status.example.org/p/colab#incidents" in feed_text


# -- feeds and badges ----------------------------------------------------------------------------
async def test_atom_feed_incidents_and_recoveries(http: aiohttp.ClientSession) -> None:
    status, text, headers = await get(http, "/feed.atom")
    assert status == 200 and headers["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(text.encode())
    titles = [e.findtext(f"{ATOM}title") for e in root.iter(f"{ATOM}entry")]
    assert titles[0] == "Google Colab: back up"  # the newest event first
    assert titles.count("Google Colab: back up") == 2 and "Kaggle: down" in titles
    summaries = [e.findtext(f"{ATOM}summary") or "" for e in root.iter(f"{ATOM}entry")]
    assert any(s.startswith(EVIL_TITLE) for s in summaries)  # escaped as XML, read back intact
    assert "<script>" not in text
    ids = [e.findtext(f"{ATOM}id") for e in root.iter(f"{ATOM}entry")]
    assert len(ids) == len(set(ids))
    colab = ET.fromstring((await get(http, "/p/colab/feed.atom"))[1].encode())
    assert {e.findtext(f"{ATOM}title") for e in colab.iter(f"{ATOM}entry")} == {
        "Google Colab: down",
        "Google Colab: back up",
    }


async def test_badges(http: aiohttp.ClientSession) -> None:
    status, text, headers = await get(http, "/badge/kaggle.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    svg = ET.fromstring(text.encode())
    assert [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")] == ["Kaggle", "down"]
    assert json.loads((await get(http, "/badge/colab.json"))[1]) == {
        "schemaVersion": 1,
        "label": "Google Colab",
        "message": "up",
        "color": "brightgreen",
        "cacheSeconds": 300,
    }
    assert json.loads((await get(http, "/badge/azure.json"))[1])["message"] == "retired"
    assert (await get(http, "/badge/nope.svg"))[0] == 404


# -- health, readiness, metrics -------------------------------------------------------------------
async def test_healthz(http: aiohttp.ClientSession) -> None:
    status, text, headers = await get(http, "/healthz")
    assert status == 200 and json.loads(text)["status"] == "ok"
    assert headers["Cache-Control"] == "no-store"


async def test_readyz_names_what_is_not_ready(
    http: aiohttp.ClientSession, server: WebServer, seeded: Seeded
) -> None:
    status, text, _ = await get(http, "/readyz")
    body = json.loads(text)
    assert status == 200 and body["ready"] is True and body["not_ready"] == []
    assert body["checks"]["database"]["ok"] and body["checks"]["monitor"]["ok"]
    seeded.clock.advance(3600)  # no sweep for an hour
    status, text, _ = await get(http, "/readyz")
    body = json.loads(text)
    assert status == 503 and body["not_ready"] == ["monitor"]
    assert "3600 s old" in body["checks"]["monitor"]["detail"]


async def test_readyz_adapters_kernels_and_a_locked_database(
    seeded: Seeded, web_settings: WebSettings
) -> None:
    import sqlite3

    from bot.web.health import Check, Readiness

    data = StoreStatusData(seeded.store, seeded.platforms, seeded.settings, clock=seeded.clock)
    adapters = {"telegram": Check(False, "not connected"), "discord": True}
    readiness = Readiness(
        data,
        adapters=lambda: adapters,
        kernels=lambda: Check(False, "bubblewrap is missing", required=False),
        clock=seeded.clock,
        timeout_s=0.5,
    )
    srv = WebServer(web_settings, data, metrics=Metrics(), readiness=readiness)
    await srv.start()
    try:
        async with aiohttp.ClientSession(srv.url) as http:
            status, text, _ = await get(http, "/readyz")
            body = json.loads(text)
            assert status == 503 and body["not_ready"] == ["adapter:telegram"]
            assert body["checks"]["adapter:discord"]["ok"] is True
            assert body["checks"]["kernels"] == {
                "ok": False,
                "detail": "bubblewrap is missing",
                "required": False,
            }
            adapters["telegram"] = Check(True, "connected")
            assert (await get(http, "/readyz"))[0] == 200  # kernels are optional here
            # another process holds the write lock: the database is not writable now
            other = sqlite3.connect(seeded.store.path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                status, text, _ = await get(http, "/readyz")
            finally:
                other.execute("ROLLBACK")
                other.close()
            body = json.loads(text)
            # (the monitor's check reads through the same blocked store thread)
            assert status == 503 and body["not_ready"][0] == "database"
            assert "no answer within" in body["checks"]["database"]["detail"]
    finally:
        await srv.stop()


async def test_metrics_isolated_registry(http: aiohttp.ClientSession, metrics: Metrics) -> None:
    metrics.observe_command("telegram", "status", 0.12)
    metrics.observe_command("telegram", "status", 0.03, ok=False)
    metrics.observe_run(1.5, "timeout")
    metrics.set_run_queue(3)
    metrics.set_kernels_in_use(2)
    metrics.observe_probe("colab", "down", 0.2)
    metrics.alert_sent("telegram")
    metrics.alert_failed("discord")
    await get(http, "/")
    status, text, headers = await get(http, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = set(text.splitlines())
    for want in (
        'nbhelp_commands_total{command="status",platform="telegram"} 2.0',
        'nbhelp_command_errors_total{command="status",platform="telegram"} 1.0',
        'nbhelp_reply_seconds_bucket{command="status",le="0.05",platform="telegram"} 1.0',
        'nbhelp_reply_seconds_count{command="status",platform="telegram"} 2.0',
        'nbhelp_run_seconds_count{outcome="timeout"} 1.0',
        "nbhelp_run_queue_length 3.0",
        "nbhelp_kernels_in_use 2.0",
        'nbhelp_probes_total{platform="colab",result="down"} 1.0',
        'nbhelp_probe_latency_seconds_count{platform="colab"} 1.0',
        'nbhelp_alerts_total{adapter="telegram",outcome="sent"} 1.0',
        'nbhelp_alerts_total{adapter="discord",outcome="failed"} 1.0',
        'nbhelp_platform_status{platform="kaggle",status="down"} 1.0',
        'nbhelp_platform_status{platform="kaggle",status="up"} 0.0',
        'nbhelp_web_requests_total{code="200",route="/"} 1.0',
    ):
        assert want in lines, want
    assert "nbhelp_commands_total{" not in Metrics().exposition().decode()  # isolated


def test_module_level_metrics_calls_go_to_the_current_registry() -> None:
    from bot import metrics as m

    mine = Metrics()
    old = m.use(mine)
    try:
        m.observe_command("discord", "run", 0.5)
        m.set_verdict("colab", "down")
    finally:
        m.use(old)
    text = mine.exposition().decode()
    assert 'nbhelp_commands_total{command="run",platform="discord"} 1.0' in text
    assert 'nbhelp_platform_status{platform="colab",status="down"} 1.0' in text


# -- lifecycle -----------------------------------------------------------------------------------
async def test_routes_added_before_start_are_served(
    seeded: Seeded, web_settings: WebSettings
) -> None:
    data = StoreStatusData(seeded.store, seeded.platforms, seeded.settings, clock=seeded.clock)
    srv = WebServer(web_settings, data, metrics=Metrics())
    got: list[bytes] = []

    async def webhook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(text="ok")

    srv.add_routes([web.post("/telegram/webhook", webhook)])
    await srv.start()
    try:
        with pytest.raises(RuntimeError):
            srv.add_routes([web.get("/late", webhook)])
        async with (
            aiohttp.ClientSession(srv.url) as http,
            http.post("/telegram/webhook", data=b'{"update_id": 1}') as r,
        ):
            assert r.status == 200
        assert got == [b'{"update_id": 1}']
    finally:
        await srv.stop()
        await srv.stop()  # idempotent


async def test_commands_and_runs_reach_the_metrics(tmp_path: Path) -> None:
    """The core counts every command (unknown ones as "unknown") and the kernel router every
    run; /metrics shows them."""
    from bot import metrics
    from bot.settings import Settings
    from bot.wiring import build_core
    from tests.conftest import Chat

    mine = metrics.Metrics()
    previous = metrics.use(mine)
    core = build_core(
        Settings(
            db=tmp_path / "m.db",
            monitor={"background": False, "control_urls": ()},
            run={"pool_size": 0},
            _env_file=None,  # type: ignore[call-arg]
        )
    )
    try:
        chat = Chat(core)
        await chat.say("/help")
        await chat.say("/nonsense")
        assert "2" in await chat.say("/run print(1 + 1)")
        text = mine.exposition().decode()
    finally:
        await core.aclose()
        metrics.use(previous)
    assert 'nbhelp_commands_total{command="help",platform="test"} 1.0' in text
    assert 'nbhelp_commands_total{command="unknown",platform="test"} 1.0' in text
    assert 'nbhelp_run_seconds_count{outcome="ok"} 1.0' in text
