"""Every source kind and every fault against the fake status server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bot.monitor.fetch import Fetcher
from bot.monitor.settings import USER_AGENT, MonitorSettings
from bot.monitor.sources import Checker
from tests.fakes.status_server import (
    DNS_FAIL_URL,
    Reply,
    ThreadedStatusServer,
    closed_port_url,
)
from tests.monitor.helpers import Clock, source


@pytest.fixture
async def checker(mon_settings: MonitorSettings, clock: Clock) -> AsyncIterator[Checker]:
    f = Fetcher(mon_settings, clock=clock)
    yield Checker(f)
    await f.aclose()


@pytest.fixture
async def dns_checker(mon_settings: MonitorSettings, clock: Clock) -> AsyncIterator[Checker]:
    """For DNS failures: the sandbox's resolver now and then drops a query and glibc retries
    after 5 s, so give lookups room (and no retries) to keep the step deterministic."""
    f = Fetcher(mon_settings.model_copy(update={"timeout_s": 8.0, "retries": 0}), clock=clock)
    yield Checker(f)
    await f.aclose()


async def run(checker: Checker, kind: str, url: str, **kw):  # type: ignore[no-untyped-def]
    return await checker.check(source(kind, url, **kw))


# -- statuspage --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "signal", "needle"),
    [
        ("ok", "up", "Statuspage: Codespaces operational"),
        ("major_outage", "down", "Statuspage: Codespaces major_outage"),
        ("degraded", "degraded", "Codespaces degraded_performance"),
        ("incident", "degraded", "'Slow Codespaces creation'"),
        ("other_incident", "up", "Codespaces operational"),
        ("maintenance", "maintenance", "'Codespaces database upgrade'"),
        ("maintenance_scheduled", "up", "Codespaces operational"),
    ],
)
async def test_statuspage_component(checker, fake, scenario, signal, needle):  # type: ignore[no-untyped-def]
    ev = await run(
        checker,
        "statuspage",
        fake.url(f"/statuspage/{scenario}/summary.json"),
        component="Codespaces",
        official=True,
    )
    assert ev.signal == signal, ev.line
    assert needle in ev.line
    assert ev.failed_step is None and ev.readable and ev.statement
    assert ev.latency_ms is not None


async def test_statuspage_outage_carries_incident(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(
        checker,
        "statuspage",
        fake.url("/statuspage/major_outage/summary.json"),
        component="codespaces",
        official=True,
    )
    assert ev.incident_title == "Codespaces are failing to start"
    assert ev.incident_url == "https://stspg.io/abc"


async def test_statuspage_page_indicator_without_component(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "statuspage", fake.url("/statuspage/page_major/summary.json"))
    assert ev.signal == "down"
    assert "Partial System Outage" in ev.line
    ok = await run(checker, "statuspage", fake.url("/statuspage/ok/summary.json"))
    assert ok.signal == "up"


async def test_statuspage_group_and_visit_components_are_skipped(checker, fake):  # type: ignore[no-untyped-def]
    visit = await run(
        checker,
        "statuspage",
        fake.url("/statuspage/ok/summary.json"),
        component="Visit www.githubstatus.com for more information",
    )
    assert visit.signal == "unknown" and "not found" in visit.line
    missing = await run(
        checker, "statuspage", fake.url("/statuspage/ok/summary.json"), component="Nope"
    )
    assert missing.signal == "unknown" and not missing.readable


# -- google --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "signal", "needle"),
    [
        (
            "ongoing",
            "degraded",
            "Google Workspace: ongoing incident 'Drive errors' since 08:03 UTC",
        ),
        ("outage", "down", "'Drive unavailable'"),
        ("ended", "up", "no ongoing incident for Google Drive"),
        ("other_product", "up", "no ongoing incident"),
        ("none", "up", "no ongoing incident"),
    ],
)
async def test_google_workspace(checker, fake, scenario, signal, needle):  # type: ignore[no-untyped-def]
    ev = await run(
        checker,
        "google_workspace",
        fake.url(f"/google/{scenario}/incidents.json"),
        products=["Google Drive"],
        official=True,
    )
    assert ev.signal == signal, ev.line
    assert needle in ev.line


async def test_google_cloud_incident_url_and_any_product(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(
        checker, "google_cloud", fake.url("/google/other_product/incidents.json"), official=True
    )
    assert ev.signal == "degraded"
    assert ev.line.startswith("Google Cloud: ongoing incident 'Gmail delays'")
    assert ev.incident_url == fake.url("/google/other_product/incidents/abc123")


# -- better stack, binder, github ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenario", "signal"), [("ok", "up"), ("degraded", "degraded"), ("downtime", "down")]
)
async def test_betterstack(checker, fake, scenario, signal):  # type: ignore[no-untyped-def]
    ev = await run(
        checker, "betterstack", fake.url(f"/betterstack/{scenario}/index.json"), official=True
    )
    assert ev.signal == signal
    assert ev.line.startswith("Better Stack: Hugging Face")


async def test_betterstack_component(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(
        checker, "betterstack", fake.url("/betterstack/degraded/index.json"), component="Spaces"
    )
    assert ev.signal == "degraded" and "Spaces degraded" in ev.line


async def test_binder_health(checker, fake):  # type: ignore[no-untyped-def]
    ok = await run(checker, "binder_health", fake.url("/binder/ok/health"), official=True)
    assert ok.signal == "up" and "healthy" in ok.line
    bad = await run(checker, "binder_health", fake.url("/binder/unhealthy/health"), official=True)
    assert bad.signal == "down" and bad.readable and bad.statement
    assert "unhealthy (failing: Docker registry)" in bad.line
    gone = await run(checker, "binder_health", closed_port_url(), official=True)
    assert gone.signal == "down" and gone.failed_step == "connect"
    assert not gone.statement and gone.is_probe  # unreachable = our probe, not a statement


@pytest.mark.parametrize(
    ("scenario", "signal", "needle"),
    [
        ("open", "down", "GitHub 'announce' issue open: 'Colab outage: cannot connect"),
        ("notice", "degraded", "'Elevated errors saving notebooks' (#5900)"),
        ("none", "up", "no recent open 'announce' issue"),
        ("old", "up", "1 older still open"),
        ("pr_only", "up", "no recent open"),
        ("ratelimited", "unknown", "rate limited"),
    ],
)
async def test_github_issues(checker, fake, scenario, signal, needle):  # type: ignore[no-untyped-def]
    ev = await run(
        checker,
        "github_issues",
        fake.url(f"/github/{scenario}/issues"),
        label="announce",
        official=True,
    )
    assert ev.signal == signal, ev.line
    assert needle in ev.line
    if signal in ("down", "degraded"):
        assert ev.incident_url and ev.incident_url.startswith("https://github.com/")


# -- http probes ----------------------------------------------------------------------------------
async def test_http_ok_sends_user_agent(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", fake.url("/http/ok"), keyword="welcome", degraded_ms=5000)
    assert ev.signal == "up"
    assert ev.line.startswith("HTTP 200 from 127.0.0.1 in ")
    assert ev.latency_ms is not None and ev.latency_ms < 5000
    assert fake.user_agents[-1] == USER_AGENT


async def test_http_slow_is_degraded(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", fake.url("/http/slow"), degraded_ms=150)
    assert ev.signal == "degraded"
    assert ev.line.startswith("slow: ") and "(limit 150 ms)" in ev.line


async def test_http_503_retried_then_down(checker, fake):  # type: ignore[no-untyped-def]
    before = fake.hits["/http/503"]
    ev = await run(checker, "http", fake.url("/http/503"))
    assert ev.signal == "down" and ev.failed_step == "http"
    assert ev.line == "HTTP 503 from 127.0.0.1 after 3 tries"
    assert fake.hits["/http/503"] - before == 3  # 1 try + 2 retries


async def test_http_retry_recovers_transient_failure(checker, fake):  # type: ignore[no-untyped-def]
    url = fake.sequence("/flaky/once", [Reply(status=502), Reply(body="fine")])
    ev = await run(checker, "http", url)
    assert ev.signal == "up"


async def test_http_4xx_not_retried(checker, fake):  # type: ignore[no-untyped-def]
    before = fake.hits["/http/404"]
    ev = await run(checker, "http", fake.url("/http/404"))
    assert ev.signal == "down" and ev.line == "HTTP 404 from 127.0.0.1"
    assert fake.hits["/http/404"] - before == 1


async def test_http_keyword_missing(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", fake.url("/http/keyword"), keyword="Welcome")
    assert ev.signal == "down" and ev.failed_step == "http"
    assert "'Welcome' missing" in ev.line


async def test_http_error_page_with_200_fails_keyword(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", fake.url("/fault/error_page"), keyword="Colab")
    assert ev.signal == "down"


# -- network faults: each becomes evidence with the failed step ------------------------------------
async def test_dns_failure(dns_checker):  # type: ignore[no-untyped-def]
    ev = await run(dns_checker, "http", DNS_FAIL_URL)
    assert ev.signal == "down" and ev.failed_step == "dns" and ev.network_failure
    assert ev.line == "DNS lookup failed for nonexistent.invalid"


async def test_connection_refused(checker):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", closed_port_url())
    assert ev.failed_step == "connect" and "refused" in ev.line


async def test_tls_error(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", fake.tls_error_url())
    assert ev.failed_step == "tls", ev.line
    assert ev.line.startswith("TLS handshake with 127.0.0.1 failed")


async def test_hang_past_timeout(checker, fake, mon_settings):  # type: ignore[no-untyped-def]
    before = fake.hits["/fault/hang"]
    ev = await run(checker, "http", fake.url("/fault/hang"))
    assert ev.failed_step == "timeout" and ev.signal == "down"
    assert ev.line == f"no answer from 127.0.0.1 within {mon_settings.timeout_s:g} s"
    assert ev.latency_ms is not None and ev.latency_ms >= mon_settings.timeout_s * 1000 * 0.9
    assert fake.hits["/fault/hang"] - before == 1  # a timeout is not retried


async def test_redirect_loop(checker, fake):  # type: ignore[no-untyped-def]
    ev = await run(checker, "http", fake.url("/fault/redirect_loop"))
    assert ev.failed_step == "http" and ev.line == "redirect loop at 127.0.0.1"


# -- feed faults: "status feed unreadable", never an exception -------------------------------------
FEED_KINDS = ["statuspage", "google_cloud", "google_workspace", "betterstack", "github_issues"]


@pytest.mark.parametrize("kind", FEED_KINDS)
@pytest.mark.parametrize(
    ("path", "why", "step"),
    [
        ("/fault/html", "HTML instead of JSON", "parse"),
        ("/fault/html_as_json", "HTML instead of JSON", "parse"),
        ("/fault/error_page", "HTML instead of JSON", "parse"),
        ("/fault/truncated", "truncated or invalid JSON", "parse"),
        ("/fault/garbage", "truncated or invalid JSON", "parse"),
        ("/fault/empty", "empty response", "parse"),
        ("/fault/500", "HTTP 500", "http"),
        ("/fault/redirect_loop", "redirect loop at 127.0.0.1", "http"),
    ],
)
async def test_feed_faults(checker, fake, kind, path, why, step):  # type: ignore[no-untyped-def]
    ev = await run(checker, kind, fake.url(path), official=True)
    assert ev.signal == "unknown"
    assert ev.failed_step == step
    assert ev.line.endswith(f"status feed unreadable ({why})"), ev.line
    assert not ev.readable and not ev.statement and not ev.is_probe


@pytest.mark.parametrize("kind", FEED_KINDS)
async def test_feed_wrong_shape(checker, fake, kind):  # type: ignore[no-untyped-def]
    ev = await run(checker, kind, fake.url("/fault/wrong_shape"), official=True)
    assert ev.signal == "unknown" and "status feed unreadable" in ev.line


@pytest.mark.parametrize("kind", FEED_KINDS)
async def test_feed_network_faults(dns_checker, fake, kind):  # type: ignore[no-untyped-def]
    checker = dns_checker
    for url, step in (
        (DNS_FAIL_URL, "dns"),
        (closed_port_url(), "connect"),
        (fake.tls_error_url(), "tls"),
    ):
        ev = await run(checker, kind, url, official=True)
        assert ev.signal == "unknown" and ev.failed_step == step, ev.line
        assert "status feed unreadable" in ev.line


async def test_feed_hang(checker, fake, mon_settings):  # type: ignore[no-untyped-def]
    ev = await run(checker, "statuspage", fake.url("/fault/hang"), official=True)
    assert ev.failed_step == "timeout" and ev.signal == "unknown"
    within = f"within {mon_settings.timeout_s:g} s"
    assert f"status feed unreadable (no answer from 127.0.0.1 {within})" in ev.line


async def test_binder_html_error(checker, fake):  # type: ignore[no-untyped-def]
    url = fake.reply(
        "/binder/proxy502/health",
        Reply(status=502, body="<html>Bad gateway</html>", content_type="text/html"),
    )
    ev = await run(checker, "binder_health", url, official=True)
    assert ev.signal == "down" and not ev.readable
    assert "HTTP 502, HTML instead of JSON" in ev.line


# -- the shared client: cache, coalescing, concurrency ------------------------------------------------
async def test_feeds_cached_and_coalesced(fake: ThreadedStatusServer, mon_settings, clock):  # type: ignore[no-untyped-def]
    url = fake.json("/cache/summary.json", {"status": {"indicator": "none"}})
    f = Fetcher(mon_settings, clock=clock)
    c = Checker(f)
    src = source("statuspage", url)
    try:
        evs = await c.check_many([src] * 5)
        assert {e.signal for e in evs} == {"up"}
        assert fake.hits["/cache/summary.json"] == 1  # five sources, one request
        await c.check(src)
        assert fake.hits["/cache/summary.json"] == 1
        clock.advance(mon_settings.feed_cache_s + 1)
        await c.check(src)
        assert fake.hits["/cache/summary.json"] == 2
    finally:
        await f.aclose()


async def test_probes_are_not_cached(checker, fake):  # type: ignore[no-untyped-def]
    url = fake.text("/nocache/probe", "hi")
    await run(checker, "http", url)
    await run(checker, "http", url)
    assert fake.hits["/nocache/probe"] == 2


async def test_control_check(fake, clock):  # type: ignore[no-untyped-def]
    s = MonitorSettings(
        trust_env=False, control_urls=(closed_port_url(), fake.url("/http/ok")), retry_delays_s=(0,)
    )
    f = Fetcher(s, clock=clock)
    try:
        assert await f.reachable() is True
    finally:
        await f.aclose()
    s2 = MonitorSettings(
        trust_env=False, control_urls=(DNS_FAIL_URL, closed_port_url()), control_timeout_s=8
    )
    f2 = Fetcher(s2, clock=clock)
    try:
        assert await f2.reachable() is False
    finally:
        await f2.aclose()
    f3 = Fetcher(MonitorSettings(trust_env=False, control_urls=()), clock=clock)
    try:
        assert await f3.reachable() is None
    finally:
        await f3.aclose()


async def test_retries_stay_within_the_wall_budget(fake, clock):  # type: ignore[no-untyped-def]
    # A 1 s budget, and answers that take 0.45 s each: a third try would not fit.
    s = MonitorSettings(timeout_s=1.0, retry_delays_s=(0.0, 0.0), trust_env=False)
    f = Fetcher(s, clock=clock)
    try:
        url = fake.reply("/slow503", Reply(status=503, delay_s=0.45))
        t = time.perf_counter()
        ev = await run(Checker(f), "http", url)
        took = time.perf_counter() - t
    finally:
        await f.aclose()
    tries = fake.hits["/slow503"]
    assert ev.signal == "down"
    assert ev.line == f"HTTP 503 from 127.0.0.1 after {tries} tr{'y' if tries == 1 else 'ies'}"
    assert 1 <= tries <= 2 and took >= 0.45 * tries  # a third try of 0.45 s would not fit in 1 s
