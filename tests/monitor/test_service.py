"""The service end to end against the fake: verdicts, evidence, history, alerts, offline guard."""

from __future__ import annotations

import asyncio
import struct

import pytest

from bot import migrations
from bot.monitor import OFFLINE_LINE, MonitorService, MonitorSettings, UnknownPlatform
from bot.store import transaction
from tests.fakes.status_server import (
    DNS_FAIL_URL,
    Reply,
    ThreadedStatusServer,
    closed_port_url,
)
from tests.monitor.helpers import Clock, platform, source

OK = Reply(body="<html>Welcome to Colab</html>", content_type="text/html")
FAIL = Reply(status=503, body="Service Unavailable")
# Slower than the probe's 2 s threshold; a normal answer on a loaded machine stays well under it.
SLOW = Reply(body="<html>Welcome to Colab</html>", content_type="text/html", delay_s=2.5)


def colab(fake: ThreadedStatusServer, name: str, *, feed: str = "/google/none/incidents.json"):  # type: ignore[no-untyped-def]
    url = fake.reply(f"/{name}/colab", OK)
    return platform(
        "colab",
        [
            source("http", url, name="Colab site probe", keyword="Welcome", degraded_ms=2000),
            source(
                "google_workspace",
                fake.url(feed),
                name="Google Workspace (Drive)",
                products=["Google Drive"],
                official=True,
            ),
        ],
        name="Google Colab",
        aliases=["gc"],
    )


def outbox(svc: MonitorService) -> list[tuple[str, str]]:
    with transaction(svc.store.db) as db:
        return [
            (r[0], r[1])
            for r in db.execute("SELECT kind, chat_id FROM monitor_outbox ORDER BY id").fetchall()
        ]


async def test_up_pending_down_recovered_with_alerts(fake, service_factory, clock: Clock):  # type: ignore[no-untyped-def]
    p = colab(fake, "t1")
    svc = service_factory({"colab": p}, alternative=lambda pid: "Kaggle")
    await svc.subscribe("console", "chat-1")
    await svc.subscribe("telegram", "42", ["colab"])

    v = await svc.check("colab")
    assert v.status == "up" and v.alert is None
    view = await svc.verdict("colab")
    assert view.status == "up" and view.headline == "up" and view.probably_local
    assert view.evidence[0].line.startswith("HTTP 200 from 127.0.0.1 in ")
    assert view.evidence[1].line == "Google Workspace: no ongoing incident for Google Drive"
    assert view.latency_ms is not None and not view.stale
    assert view.short_line().startswith("🟢 Google Colab: up · ")

    fake.reply("/t1/colab", FAIL)
    for n in (1, 2):
        clock.advance(300)
        v = await svc.check("colab")
        assert v.status == "up" and v.confidence == "possible problems" and v.alert is None
        assert (
            await svc.verdict("colab")
        ).headline == f"possible problems ({n} of 3 checks failed)"
    clock.advance(300)
    v = await svc.check("colab")
    assert v.status == "down" and v.alert == "down" and v.queued == 2
    view = await svc.verdict("colab")
    assert view.headline == "down — problems detected" and not view.probably_local
    assert view.evidence[0].text == "HTTP 503 from 127.0.0.1 after 3 tries (just now)"
    alerts = await svc.pending("console")
    assert len(alerts) == 1 and alerts[0].kind == "down"
    assert alerts[0].text.splitlines() == [
        "🔴 Google Colab is down — problems detected.",
        "• HTTP 503 from 127.0.0.1 after 3 tries",
        "Try instead: Kaggle",
    ]
    assert [a.chat_id for a in await svc.pending("telegram")] == ["42"]

    clock.advance(300)  # still down: no second alert
    assert (await svc.check("colab")).alert is None
    fake.reply("/t1/colab", OK)
    clock.advance(300)
    v = await svc.check("colab")
    assert v.status == "down" and v.pending == "up"
    clock.advance(300)
    v = await svc.check("colab")
    assert v.status == "up" and v.alert == "recovered"
    rec = (await svc.pending("console"))[-1]
    assert rec.text == "✅ Google Colab is back up after 15 min."  # down at +900, up at +1800
    view = await svc.verdict("colab")
    assert view.last_incident is not None and not view.last_incident.ongoing
    assert view.last_incident.title == "HTTP 503 from 127.0.0.1 after 3 tries"
    assert view.uptime.h24 == pytest.approx(4 / 7)
    assert [k for k, _ in outbox(svc)] == ["down", "down", "recovered", "recovered"]


async def test_slow_becomes_degraded(fake, service_factory, clock):  # type: ignore[no-untyped-def]
    svc = service_factory({"colab": colab(fake, "t2")})
    fake.reply("/t2/colab", SLOW)
    for _ in range(3):
        clock.advance(300)
        v = await svc.check("colab")
    assert v.status == "degraded"
    view = await svc.verdict("colab")
    assert view.headline == "degraded — problems detected"
    assert view.evidence[0].line.startswith("slow: ") and "(limit 2.0 s)" in view.evidence[0].line


async def test_official_incident_moves_at_once(fake, service_factory):  # type: ignore[no-untyped-def]
    svc = service_factory({"colab": colab(fake, "t3", feed="/google/outage/incidents.json")})
    await svc.subscribe("console", "c")
    v = await svc.check("colab")
    assert v.status == "down" and v.alert == "down"
    view = await svc.verdict("colab")
    assert view.official_incident is not None
    assert view.official_incident.line.startswith(
        "Google Workspace: ongoing incident 'Drive unavailable' since "
    )
    assert view.official_incident.url is not None and view.official_incident.url.endswith(
        "/google/outage/incidents/abc123"
    )
    assert view.last_incident is not None and view.last_incident.official
    assert view.last_incident.title == "Drive unavailable"
    assert (
        (await svc.pending("console"))[0]
        .text.splitlines()[1]
        .startswith("• Google Workspace: ongoing incident 'Drive unavailable'")
    )


async def test_statuspage_maintenance_at_once(fake, service_factory):  # type: ignore[no-untyped-def]
    p = platform(
        "codespaces",
        [
            source(
                "statuspage",
                fake.url("/statuspage/maintenance/summary.json"),
                component="Codespaces",
                official=True,
            ),
            source("http", fake.url("/http/ok")),
        ],
    )
    svc = service_factory({"codespaces": p})
    await svc.subscribe("console", "c")
    v = await svc.check("codespaces")
    assert v.status == "maintenance" and v.alert == "maintenance"
    assert (await svc.verdict("codespaces")).headline == "maintenance"


async def test_all_probes_fail_means_unknown_and_no_alerts(fake, store, clock):  # type: ignore[no-untyped-def]
    s = MonitorSettings(
        timeout_s=1,
        retry_delays_s=(0,),
        trust_env=False,
        jitter_s=0,
        control_urls=(closed_port_url(), fake.tls_error_url()),
    )
    platforms = {
        "colab": platform(
            "colab",
            [
                source("http", closed_port_url()),
                source(
                    "google_workspace",
                    closed_port_url("127.0.0.1", "/incidents.json"),
                    official=True,
                ),
            ],
        ),
        "kaggle": platform("kaggle", [source("http", closed_port_url())]),
        "binder": platform(
            "binder", [source("binder_health", fake.tls_error_url("/health"), official=True)]
        ),
    }
    svc = MonitorService(store, platforms, s, clock=clock)
    try:
        await svc.subscribe("console", "c")
        for _ in range(6):
            clock.advance(300)
            out = await svc.sweep()
            assert all(v.offline and v.status == "unknown" for v in out.values())
        views = await svc.all_verdicts()
        assert {v.status for v in views} == {"unknown"}
        assert {v.headline for v in views} == {OFFLINE_LINE}
        assert all(v.confidence is None for v in views)
        assert await svc.pending("console") == [] and outbox(svc) == []
        one = await svc.check("colab")  # a single check consults the control URLs too
        assert one.offline
    finally:
        await svc.aclose()


async def test_all_fail_without_control_urls_is_offline(store, clock):  # type: ignore[no-untyped-def]
    s = MonitorSettings(timeout_s=1, retry_delays_s=(0,), trust_env=False, control_urls=())
    platforms = {pid: platform(pid, [source("http", closed_port_url())]) for pid in "abc"}
    svc = MonitorService(store, platforms, s, clock=clock)
    try:
        await svc.subscribe("console", "c")
        for _ in range(4):
            out = await svc.sweep()
        assert all(v.offline for v in out.values()) and outbox(svc) == []
    finally:
        await svc.aclose()


async def test_one_platform_unreachable_while_internet_works(
    fake, service_factory, clock, mon_settings
):  # type: ignore[no-untyped-def]
    p = platform("kaggle", [source("http", DNS_FAIL_URL)])
    svc = service_factory({"kaggle": p}, mon_settings.model_copy(update={"timeout_s": 8.0}))
    for _ in range(3):
        clock.advance(300)
        v = await svc.check("kaggle")
        assert not v.offline
    assert v.status == "down"
    assert (await svc.verdict("kaggle")).evidence[
        0
    ].line == "DNS lookup failed for nonexistent.invalid"


async def test_back_online_clears_the_guard(fake, store, clock):  # type: ignore[no-untyped-def]
    s = MonitorSettings(timeout_s=1, retry_delays_s=(0,), trust_env=False, control_urls=())
    url = fake.reply("/t9/a", OK)
    platforms = {
        "a": platform("a", [source("http", url)]),
        "b": platform("b", [source("http", fake.reply("/t9/b", OK))]),
    }
    svc = MonitorService(store, platforms, s, clock=clock)
    try:
        await svc.sweep()
        fake.reply("/t9/a", Reply(hang=True))
        fake.reply("/t9/b", Reply(hang=True))
        clock.advance(300)
        out = await svc.sweep()
        assert all(v.offline for v in out.values())
        fake.reply("/t9/a", OK)
        fake.reply("/t9/b", OK)
        clock.advance(300)
        out = await svc.sweep()
        assert not any(v.offline for v in out.values())
        assert {v.status for v in await svc.all_verdicts()} == {"up"}
    finally:
        await svc.aclose()


async def test_restart_neither_repeats_nor_loses_alerts(fake, db_path, mon_settings, clock):  # type: ignore[no-untyped-def]
    from bot.store import Store

    p = {"colab": colab(fake, "t4")}
    s = mon_settings.model_copy(update={"reminder_s": 3 * 3600})
    store_a = Store(db_path)
    store_a.migrate(migrations.steps())
    a = MonitorService(store_a, p, s, clock=clock)
    await a.subscribe("console", "chat-1", ["colab"])
    await a.check("colab")
    fake.reply("/t4/colab", FAIL)
    for _ in range(3):
        clock.advance(300)
        await a.check("colab")
    assert [x.kind for x in await a.pending("console")] == ["down"]
    await a.aclose()
    store_a.close()

    store_b = Store(db_path)  # a new process on the same file
    store_b.migrate(migrations.steps())
    b = MonitorService(store_b, p, s, clock=clock)
    try:
        assert (await b.subscriptions("console", "chat-1")).platforms == {"colab"}
        assert (await b.verdict("colab")).status == "down"
        pending = await b.pending("console")
        assert [x.kind for x in pending] == ["down"]  # not lost
        clock.advance(300)
        assert (await b.check("colab")).alert is None  # not repeated
        assert await b.mark_sent(pending[0].id) and not await b.mark_sent(pending[0].id)
        assert await b.pending("console") == []
        clock.advance(3 * 3600)
        assert (await b.check("colab")).alert == "reminder"
        assert (await b.pending("console"))[0].text.startswith(
            "🔴 Google Colab is still down for 3 h"
        )
        clock.advance(300)
        assert (await b.check("colab")).alert is None
        fake.reply("/t4/colab", OK)
        for _ in range(2):
            clock.advance(300)
            v = await b.check("colab")
        assert v.alert == "recovered"
    finally:
        await b.aclose()
        store_b.close()


async def test_flapping_is_held_back(fake, service_factory, clock, mon_settings):  # type: ignore[no-untyped-def]
    s = mon_settings.model_copy(
        update={
            "failure_threshold": 1,
            "success_threshold": 1,
            "flap_threshold": 3,
            "flap_window_s": 3600,
        }
    )
    svc = service_factory({"colab": colab(fake, "t5")}, s)
    await svc.subscribe("console", "c")
    kinds = []
    for reply in [OK, FAIL, OK, FAIL, OK, FAIL, OK]:
        fake.reply("/t5/colab", reply)
        clock.advance(60)
        kinds.append((await svc.check("colab")).alert)
    assert kinds[:3] == [None, "down", "recovered"]
    assert kinds[3:] == [None, None, None, None]  # flapping: held back
    fake.reply("/t5/colab", OK)
    clock.advance(3601)
    assert (await svc.check("colab")).alert is None  # settled on the last alerted state: nothing


async def test_subscriptions(fake, service_factory):  # type: ignore[no-untyped-def]
    ps = {pid: platform(pid, [source("http", fake.url("/http/ok"))]) for pid in ("a", "b", "c")}
    svc = service_factory(ps)
    assert (await svc.subscriptions("tg", 1)).empty
    assert (await svc.subscribe("tg", 1)).all
    sub = await svc.unsubscribe("tg", 1, ["b"])
    assert not sub.all and sub.platforms == {"a", "c"}
    assert (await svc.unsubscribe("tg", 1)).empty
    with pytest.raises(UnknownPlatform):
        await svc.subscribe("tg", 1, ["nope"])


async def test_alert_stream(fake, service_factory, clock):  # type: ignore[no-untyped-def]
    svc = service_factory({"colab": colab(fake, "t6", feed="/google/outage/incidents.json")})
    await svc.subscribe("console", "c")
    stream = svc.alert_stream("console", poll_s=5)
    nxt = asyncio.ensure_future(anext(stream))
    await svc.check("colab")
    alert = await asyncio.wait_for(nxt, 60)
    assert alert.kind == "down" and alert.chat_id == "c"
    await svc.mark_sent(alert.id)
    await stream.aclose()


async def test_views_uptime_stale_retired_and_unknown_ids(fake, service_factory, clock):  # type: ignore[no-untyped-def]
    ps = {
        "colab": colab(fake, "t7"),
        "azure-notebooks": platform("azure-notebooks", [], retired=True, name="Azure Notebooks"),
        "local": platform("local", [], name="Local Jupyter"),
    }
    svc = service_factory(ps)
    v = await svc.verdict("colab")
    assert v.status == "unknown" and v.stale and v.headline == "unknown — not checked yet"
    await svc.status("colab")  # stale: checked on the spot
    v = await svc.verdict("colab")
    assert v.status == "up" and not v.stale and v.uptime.h24 == 1.0
    clock.advance(301)
    assert (await svc.verdict("colab")).stale
    assert [x.platform_id for x in await svc.all_verdicts()] == ["colab", "local"]
    az = await svc.verdict("azure-notebooks")
    assert az.retired and az.headline == "retired on 2021-01-15"
    assert (await svc.verdict("local")).headline == "unknown — not monitored (no status source)"
    with pytest.raises(UnknownPlatform) as err:
        await svc.verdict("colb")
    assert err.value.suggestions == ("colab",)
    assert "did you mean colab" in str(err.value)


async def test_community_reports_in_the_view(fake, service_factory, clock):  # type: ignore[no-untyped-def]
    svc = service_factory({"colab": colab(fake, "t8")})
    await svc.check("colab")
    out = await svc.add_report("colab", adapter="tg", chat_id=1, user_id=1, text="won't connect")
    assert out.accepted
    assert (await svc.add_report("colab", adapter="tg", chat_id=1, user_id=1)).reason == "duplicate"
    assert (await svc.verdict("colab")).probably_local  # one person: probably their side
    for i in range(2, 8):
        await svc.add_report("colab", adapter="tg", chat_id=i, user_id=i)
    v = await svc.verdict("colab")
    assert v.status == "degraded" and v.confidence == "possible problems"
    assert v.headline == "possible problems — many community reports"
    assert v.reports.level == "detected" and not v.probably_local


async def test_concurrent_checks_coalesce(fake, service_factory):  # type: ignore[no-untyped-def]
    svc = service_factory({"colab": colab(fake, "t10")})
    before = fake.hits["/t10/colab"]
    a, b = await asyncio.gather(svc.check("colab"), svc.check("colab"))
    assert a == b and fake.hits["/t10/colab"] - before == 1


async def test_chart(fake, service_factory, clock):  # type: ignore[no-untyped-def]
    svc = service_factory({"colab": colab(fake, "t11")})
    for i in range(6):
        fake.reply("/t11/colab", FAIL if i in (2, 3, 4) else OK)
        clock.advance(600)
        await svc.check("colab")
    png = await svc.chart("colab", "24h")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (800, 450)
    for span in ("7d", "30d"):  # an hour of data is one or two hourly buckets: a sentence
        note = await svc.chart("colab", span)
        assert isinstance(note, str) and "too little to draw a chart yet" in note


async def test_background_loop(fake, store):  # type: ignore[no-untyped-def]
    s = MonitorSettings(
        interval_s=0.05,
        jitter_s=0.0,
        timeout_s=1,
        retry_delays_s=(0,),
        trust_env=False,
        control_urls=(),
    )
    svc = MonitorService(store, {"colab": colab(fake, "t12")}, s)  # the real clock
    await svc.start()
    try:
        async with asyncio.timeout(60):
            await svc.wait_sweeps(3)
    finally:
        await svc.aclose()
    assert (await svc.verdict("colab")).status == "up"


async def test_status_answers_within_wait_then_the_check_lands(fake, service_factory):  # type: ignore[no-untyped-def]
    url = fake.reply("/t13/colab", Reply(delay_s=0.5, body="ok"))
    svc = service_factory({"colab": platform("colab", [source("http", url)])})
    view = await svc.status("colab", wait_s=0.05)  # the check takes longer than we wait
    assert view.stale and view.status == "unknown" and view.age_s is None and view.checking
    assert view.short_line() == "⚪ Colab: unknown — not checked yet · checking now"
    v = await svc.check("colab")  # joins the check already in flight: no second request
    assert v.status == "up" and fake.hits["/t13/colab"] == 1
    assert (await svc.verdict("colab")).status == "up"
    assert await svc.current_statuses() == {"colab": "up"}


async def test_status_all_checks_stale_platforms_together(fake, service_factory):  # type: ignore[no-untyped-def]
    ps = {pid: platform(pid, [source("http", fake.url("/http/ok"))]) for pid in ("a", "b")}
    svc = service_factory(ps)
    views = await svc.status_all()
    assert [v.status for v in views] == ["up", "up"] and svc.sweeps == 1
    lines = (await svc.verdict("a")).lines()
    assert lines[0] == "🟢 A: up"
    assert lines[1].startswith("  • HTTP 200 from 127.0.0.1 in ")
    assert lines[2].startswith("  uptime 24h 100.0% · 7d 100.0% · 30d 100.0%, avg ")


async def test_control_ok_clears_offline_even_when_the_platform_fails(  # type: ignore[no-untyped-def]
    fake, store, clock, mon_settings
):
    ps = {"kaggle": platform("kaggle", [source("http", closed_port_url())])}
    cut_off = mon_settings.model_copy(update={"control_urls": (closed_port_url(),)})
    a = MonitorService(store, ps, cut_off, clock=clock)
    b = MonitorService(store, ps, mon_settings, clock=clock)  # e.g. another process, online
    try:
        assert (await a.check("kaggle")).offline
        assert (await a.verdict("kaggle")).offline
        clock.advance(300)
        v = await b.check("kaggle")
        assert not v.offline and v.confidence == "possible problems"
        assert not (await a.verdict("kaggle")).offline  # the shared store says online again
    finally:
        await a.aclose()
        await b.aclose()


async def test_sweeps_feed_the_probe_and_verdict_metrics(fake, service_factory):  # type: ignore[no-untyped-def]
    from bot import metrics

    mine = metrics.Metrics()
    previous = metrics.use(mine)
    try:
        svc = service_factory({"colab": colab(fake, "t-metrics")})
        await svc.check("colab")
        text = mine.exposition().decode()
    finally:
        metrics.use(previous)
    assert 'nbhelp_probes_total{platform="colab",result="up"} 1.0' in text
    assert 'nbhelp_platform_status{platform="colab",status="up"} 1.0' in text
