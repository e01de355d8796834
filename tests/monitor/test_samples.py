"""Every parser against real captures of the feeds, served by the fake on 127.0.0.1.

The captures live outside the project (``../shared/feed-samples/``, each with a ``.SOURCE`` note
saying where it comes from); they are read from there, never copied. ``NBHELP_FEED_SAMPLES``
points elsewhere; without the folder (a fresh clone in CI) these tests are skipped.

Each test's name says what a careful person reading that page would conclude; the test checks
that the monitor concludes the same.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.monitor.evidence import Evidence
from bot.monitor.fetch import Fetcher
from bot.monitor.settings import MonitorSettings
from bot.monitor.sources import Checker
from bot.monitor.verdict import observe
from tests.fakes.status_server import Reply, ThreadedStatusServer
from tests.monitor.helpers import Clock, platform, source


def _samples() -> Path | None:
    env = os.environ.get("NBHELP_FEED_SAMPLES")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared/feed-samples"
    return path if path.is_dir() else None


SAMPLES = _samples()
pytestmark = pytest.mark.skipif(
    SAMPLES is None,
    reason="real feed captures not found (set NBHELP_FEED_SAMPLES or put shared/feed-samples "
    "beside the repository)",
)


def at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def serve(
    fake: ThreadedStatusServer,
    rel: str,
    *,
    status: int = 200,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    edit: Any = None,
) -> str:
    """Serve one capture verbatim (``edit``: a function of the parsed JSON, for derived cases)."""
    assert SAMPLES is not None
    raw = (SAMPLES / rel).read_bytes()
    assert (SAMPLES / f"{rel}.SOURCE").is_file(), f"{rel} has no .SOURCE note"
    if edit is not None:
        raw = json.dumps(edit(json.loads(raw))).encode()
        rel = f"{rel}.edited.{abs(hash(raw))}"
    ctype = content_type or ("text/html" if rel.endswith(".html") else "application/json")
    return fake.reply(
        f"/samples/{rel}", Reply(status=status, body=raw, content_type=ctype, headers=headers or {})
    )


@pytest.fixture
async def checker(mon_settings: MonitorSettings, clock: Clock) -> AsyncIterator[Checker]:
    f = Fetcher(mon_settings, clock=clock)
    yield Checker(f)
    await f.aclose()


async def read(checker: Checker, kind: str, url: str, **kw: Any) -> list[Evidence]:
    return await checker.check_source(source(kind, url, official=True, **kw))


def main(evs: list[Evidence]) -> Evidence:
    return evs[0]


def hints(evs: list[Evidence]) -> list[Evidence]:
    return [e for e in evs if e.hint]


def news(evs: list[Evidence]) -> list[Evidence]:
    return [e for e in evs if e.news]


# -- Colab's `announce` issues (GitHub REST) --------------------------------------------------
GH = "github/colab_announce_{}.json"


async def test_colab_5566_tpu_deprecation_is_news_not_a_problem(checker, fake, clock):  # type: ignore[no-untyped-def]
    clock.now = at("2025-08-30T18:00:00Z")  # an hour after it was opened
    evs = await read(
        checker,
        "github_issues",
        serve(fake, GH.format("5566_tpu_notice_RECONSTRUCTED")),
        label="announce",
    )
    assert main(evs).signal == "up" and main(evs).statement
    [item] = news(evs)
    assert "#5566" in item.line and "not an outage" in item.line
    assert item.incident_url == "https://github.com/googlecolab/colabtools/issues/5566"
    obs = observe(evs, clock.now)
    assert obs.official == "up" and obs.hint is None


async def test_colab_4481_tpu_migration_is_news_not_a_problem(checker, fake, clock):  # type: ignore[no-untyped-def]
    clock.now = at("2024-04-02T09:00:00Z")
    evs = await read(
        checker,
        "github_issues",
        serve(fake, GH.format("4481_tpu_migration_RECONSTRUCTED")),
        label="announce",
    )
    assert main(evs).signal == "up" and not hints(evs)
    assert [e.incident_title for e in news(evs)] == ["TPU Node to TPU VM Migration"]


async def test_colab_4574_many_users_unable_to_connect_is_an_outage(checker, fake, clock):  # type: ignore[no-untyped-def]
    clock.now = at("2024-05-16T21:00:00Z")
    evs = await read(
        checker,
        "github_issues",
        serve(fake, GH.format("4574_outage_RECONSTRUCTED")),
        label="announce",
    )
    ev = main(evs)
    assert ev.signal == "down" and ev.statement, ev.line
    assert "Many users unable to connect to any runtimes" in ev.line and "#4574" in ev.line
    assert ev.incident_url == "https://github.com/googlecolab/colabtools/issues/4574"


async def test_colab_4574_a_week_later_is_no_longer_current(checker, fake, clock):  # type: ignore[no-untyped-def]
    clock.now = at("2024-05-23T21:00:00Z")  # still open in this capture, but a week old
    evs = await read(
        checker,
        "github_issues",
        serve(fake, GH.format("4574_outage_RECONSTRUCTED")),
        label="announce",
    )
    assert main(evs).signal == "up" and "1 older still open" in main(evs).line


async def test_colab_verdicts_from_the_announcements(fake, service_factory, clock):  # type: ignore[no-untyped-def]
    """End to end: the outage makes Colab "down" at once; the deprecation leaves it up, as news."""
    clock.now = at("2024-05-16T21:00:00Z")
    outage = serve(fake, GH.format("4574_outage_RECONSTRUCTED"))
    svc = service_factory(
        {
            "colab": platform(
                "colab", [source("github_issues", outage, label="announce", official=True)]
            )
        }
    )
    v = await svc.check("colab")
    assert v.status == "down" and v.confidence == "problems detected"
    assert (await svc.verdict("colab")).official_incident is not None

    clock.now = at("2025-08-30T18:00:00Z")
    notice = serve(fake, GH.format("5566_tpu_notice_RECONSTRUCTED"))
    svc2 = service_factory(
        {
            "colab2": platform(
                "colab2", [source("github_issues", notice, label="announce", official=True)]
            )
        }
    )
    v2 = await svc2.check("colab2")
    view = await svc2.verdict("colab2")
    assert v2.status == "up" and view.headline == "up" and view.official_incident is None
    assert [n.url for n in view.news] == ["https://github.com/googlecolab/colabtools/issues/5566"]


async def test_github_rate_limit_403_is_said_once_and_not_retried_until_reset(  # type: ignore[no-untyped-def]
    checker, fake, clock, caplog
):
    clock.now = at("2024-05-16T21:00:00Z")
    reset = int(clock.now) + 1800
    url = serve(
        fake,
        "github/rate_limited_403.json",
        status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    path = url.split(str(fake.port), 1)[1]
    src = source("github_issues", url, label="announce", official=True)
    with caplog.at_level(logging.WARNING, logger="bot.monitor.sources"):
        first = await checker.check(src)
        hits = fake.hits[path]
        for _ in range(3):
            clock.advance(300)
            again = await checker.check(src)
            assert again.signal == "unknown" and "rate limited" in again.line
        assert fake.hits[path] == hits  # not asked again before the reset
    assert first.signal == "unknown" and not first.readable and "rate limited" in first.line
    assert sum("rate limited" in r.getMessage() for r in caplog.records) == 1
    clock.now = reset + 1
    await checker.check(src)
    assert fake.hits[path] == hits + 1


async def test_github_rate_limit_body_alone_still_reads_as_rate_limited(checker, fake, clock):  # type: ignore[no-untyped-def]
    url = serve(fake, "github/rate_limited_403.json", status=403)
    ev = await checker.check(source("github_issues", url, label="announce", official=True))
    assert ev.signal == "unknown" and "rate limited" in ev.line


# -- Atlassian Statuspage ---------------------------------------------------------------------
SP = "statuspage/{}"


async def test_github_2019_all_operational_is_up(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, SP.format("github_summary_2019-12-30_operational.json"))
    page = await read(checker, "statuspage", url)
    assert main(page).signal == "up" and "All Systems Operational" in main(page).line
    comp = await read(checker, "statuspage", url, component="Git Operations")
    assert main(comp).signal == "up" and not hints(comp)


async def test_github_2020_outage_whole_page_is_down(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, SP.format("github_summary_2020-04-02_major_outage.json"))
    ev = main(await read(checker, "statuspage", url))
    assert ev.signal == "down" and "Partial System Outage" in ev.line
    assert ev.incident_url == "http://stspg.io/n0wskg2n6bvy"


async def test_github_2020_outage_a_broken_component_is_down_with_the_incident(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, SP.format("github_summary_2020-04-02_major_outage.json"))
    evs = await read(checker, "statuspage", url, component="Git Operations")
    assert main(evs).signal == "down" and main(evs).statement
    assert main(evs).incident_title == "Incident on 2020-04-02 20:20 UTC"  # the untagged one


async def test_github_2020_outage_an_operational_component_is_up_with_possible_problems(  # type: ignore[no-untyped-def]
    checker, fake
):
    """Pages itself says operational, but GitHub is investigating an incident it has not tied to
    any component (only to "Visit www.githubstatus.com…") and the page says Partial System
    Outage: a careful reader says "probably fine, but something is going on"."""
    url = serve(fake, SP.format("github_summary_2020-04-02_major_outage.json"))
    evs = await read(checker, "statuspage", url, component="GitHub Pages")
    assert main(evs).signal == "up" and main(evs).statement
    [hint] = hints(evs)
    assert "Incident on 2020-04-02 20:20 UTC" in hint.line and "Partial System Outage" in hint.line
    assert hint.incident_url == "http://stspg.io/n0wskg2n6bvy" and not hint.statement
    obs = observe(evs, 0.0)
    assert obs.official == "up" and obs.hint in ("degraded", "down")


async def test_github_2020_outage_codespaces_not_on_the_page_is_unknown_with_possible_problems(  # type: ignore[no-untyped-def]
    checker, fake
):
    """Codespaces did not exist on the 2020 page: no verdict for it, but the outage is shown."""
    url = serve(fake, SP.format("github_summary_2020-04-02_major_outage.json"))
    evs = await read(checker, "statuspage", url, component="Codespaces")
    assert main(evs).signal == "unknown" and "not found" in main(evs).line
    assert len(hints(evs)) == 1


async def test_codespaces_stays_up_but_shows_possible_problems_during_untagged_outage(  # type: ignore[no-untyped-def]
    fake, service_factory
):
    url = serve(fake, SP.format("github_summary_2020-04-02_major_outage.json"))
    svc = service_factory(
        {
            "pages": platform(
                "pages", [source("statuspage", url, component="GitHub Pages", official=True)]
            )
        }
    )
    v = await svc.check("pages")
    view = await svc.verdict("pages")
    assert v.status == "up" and v.confidence == "possible problems"
    assert view.headline.startswith("possible problems") and not view.probably_local
    assert view.hints and view.hints[0].url == "http://stspg.io/n0wskg2n6bvy"
    assert v.alert is None  # a hint is no outage alert


async def test_statuspage_docs_example_is_down_with_the_critical_incident(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, SP.format("statuspage_api_docs_example_summary.json"))
    ev = main(await read(checker, "statuspage", url))
    assert ev.signal == "down" and ev.incident_title == "Unplanned Database Outage"
    api = await read(checker, "statuspage", url, component="API")
    assert main(api).signal == "degraded" and "partial_outage" in main(api).line


async def test_github_components_json_both_operational_is_up(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, SP.format("github_components_2024-09-17.json"))
    assert main(await read(checker, "statuspage", url)).signal == "up"
    assert main(await read(checker, "statuspage", url, component="Webhooks")).signal == "up"


async def test_github_incidents_json_both_resolved_is_up(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, SP.format("github_incidents_2024-09-16.json"))
    ev = main(await read(checker, "statuspage", url))
    assert ev.signal == "up" and "no unresolved incident" in ev.line


async def test_hashicorp_group_name_aggregates_its_children_as_edited(checker, fake):  # type: ignore[no-untyped-def]
    """ "Terraform Cloud" exists only as a group: its 32 children (as hand-edited in this capture:
    29 degraded, 3 under maintenance) make it degraded, not "component not found"."""
    url = serve(fake, SP.format("hashicorp_components_2021-08-06_EDITED.json"))
    ev = main(await read(checker, "statuspage", url, component="Terraform Cloud"))
    assert ev.signal == "degraded" and ev.readable, ev.line
    assert "group of 32" in ev.line and "3 under_maintenance" in ev.line
    hcp = main(await read(checker, "statuspage", url, component="HashiCorp Cloud Platform (HCP)"))
    assert hcp.signal == "degraded" and "group of 3" in hcp.line
    # A child and a group share the name "Terraform Registry": the child's own status wins.
    reg = main(await read(checker, "statuspage", url, component="Terraform Registry"))
    assert reg.signal == "degraded" and "group" not in reg.line


# -- Google Cloud incidents.json ---------------------------------------------------------------
GOOGLE_FULL = "google/gcp_incidents_2022-07-03_full.json"


async def test_google_full_year_all_ended_is_up(checker, fake, clock):  # type: ignore[no-untyped-def]
    """1.35 MB, 157 incidents, every one with an end: nothing is going on."""
    clock.now = at("2022-07-03T12:00:00Z")
    url = serve(fake, GOOGLE_FULL)
    ev = main(await read(checker, "google_cloud", url))
    assert ev.signal == "up" and ev.readable and "no ongoing incident" in ev.line
    bq = main(await read(checker, "google_cloud", url, products=["Google BigQuery"]))
    assert bq.signal == "up"


async def test_google_feed_past_our_cap_is_unknown_and_says_why(fake, mon_settings, clock, caplog):  # type: ignore[no-untyped-def]
    """The feed grows every year: past the cap we read the newest incidents and say so."""
    clock.now = at("2022-07-03T12:00:00Z")
    s = mon_settings.model_copy(update={"feed_max_body_bytes": {"google_cloud": 200_000}})
    f = Fetcher(s, clock=clock)
    try:
        url = serve(fake, GOOGLE_FULL)
        with caplog.at_level(logging.WARNING, logger="bot.monitor.sources"):
            ev = await Checker(f).check(source("google_cloud", url, official=True))
        assert ev.signal == "unknown" and not ev.readable
        assert "larger than the 0.2 MB we accept" in ev.line and "nothing ongoing" in ev.line
        assert any("0.2 MB" in r.getMessage() for r in caplog.records)
    finally:
        await f.aclose()


async def test_google_feed_past_our_cap_still_reports_an_ongoing_incident(
    fake, mon_settings, clock
):  # type: ignore[no-untyped-def]
    """Derived from the real feed: its newest incident with ``end`` removed (ongoing)."""
    clock.now = at("2022-07-01T15:00:00Z")

    def ongoing(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items[0].pop("end")
        return items

    s = mon_settings.model_copy(update={"feed_max_body_bytes": {"google_cloud": 200_000}})
    f = Fetcher(s, clock=clock)
    try:
        url = serve(fake, GOOGLE_FULL, edit=ongoing)
        ev = await Checker(f).check(
            source("google_cloud", url, official=True, products=["Google BigQuery"])
        )
        assert ev.readable and ev.signal == "up"  # SERVICE_INFORMATION: information, not a problem
        assert "Lower throughput from the Read API" in ev.line
    finally:
        await f.aclose()


async def test_google_checkmk_incident_with_end_is_over_despite_locations(checker, fake, clock):  # type: ignore[no-untyped-def]
    clock.now = at("2023-03-10T15:30:00Z")
    url = serve(fake, "google/gcp_incident_2023-03-10_checkmk.json")
    ev = main(await read(checker, "google_cloud", url, products=["Google BigQuery"]))
    assert ev.signal == "up"


# -- Better Stack index.json --------------------------------------------------------------------
BS = "betterstack/{}"


async def test_betterstack_docs_example_operational_is_up_with_its_note(checker, fake):  # type: ignore[no-untyped-def]
    ev = main(
        await read(checker, "betterstack", serve(fake, BS.format("betterstack_docs_example.json")))
    )
    assert ev.signal == "up" and "Scheduled maintenance tonight" in ev.line


async def test_betterstack_latitude_past_downtime_is_history_not_now(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, BS.format("latitude_index_2025-06-01_TRIMMED.json"))
    assert main(await read(checker, "betterstack", url)).signal == "up"
    comp = main(await read(checker, "betterstack", url, component="app.latitude.so/api/health"))
    assert comp.signal == "up"


async def test_betterstack_not_monitored_resource_is_unknown_not_degraded(checker, fake):  # type: ignore[no-untyped-def]
    url = serve(fake, BS.format("vapi_index_2026-09-06_TRIMMED.json"))
    anthropic = main(await read(checker, "betterstack", url, component="Anthropic"))
    assert anthropic.signal == "unknown" and "not monitored" in anthropic.line
    assert main(await read(checker, "betterstack", url, component="Vapi API")).signal == "up"
    assert main(await read(checker, "betterstack", url)).signal == "up"


# -- BinderHub /health --------------------------------------------------------------------------
BH = "binder/{}"


@pytest.mark.parametrize(
    ("rel", "status", "signal", "needle"),
    [
        ("gesis_health_2025-04-25_ok.json", 200, "up", "healthy"),
        ("gesis_health_2023-06-13_hub_down.json", 503, "down", "failing: JupyterHub API"),
        ("gesis_health_2020-11-28_registry_down.json", 503, "down", "failing: Docker registry"),
        (
            "ovh_health_2023-06-13_unhealthy.json",
            503,
            "down",
            "failing: Docker registry, JupyterHub API",
        ),
        (
            "health_pod_quota_full_DERIVED.json",
            200,
            "degraded",
            "pod quota full (300 of 300 pods)",
        ),
    ],
)
async def test_binder_member_health_reads_as_a_careful_reader_would(  # type: ignore[no-untyped-def]
    checker, fake, rel, status, signal, needle
):
    ev = main(await read(checker, "binder_health", serve(fake, BH.format(rel), status=status)))
    assert ev.signal == signal and ev.readable and ev.statement, ev.line
    assert needle in ev.line


async def test_binder_one_member_with_full_quota_makes_the_federation_degraded(
    fake, service_factory
):  # type: ignore[no-untyped-def]
    full = serve(fake, BH.format("health_pod_quota_full_DERIVED.json"))
    ok = serve(fake, BH.format("gesis_health_2025-04-25_ok.json"))
    svc = service_factory(
        {
            "binder": platform(
                "binder",
                [
                    source("binder_health", full, official=True),
                    source("binder_health", ok, official=True),
                ],
            )
        }
    )
    v = await svc.check("binder")
    assert v.status == "degraded" and any("pod quota full" in e.line for e in v.evidence)


# -- HTML where JSON was expected ---------------------------------------------------------------
HTML = "faults/circleci_statuspage_index_2021-01-22.html"


@pytest.mark.parametrize("kind", ["statuspage", "google_cloud", "betterstack", "github_issues"])
async def test_html_page_is_feed_unreadable(checker, fake, kind):  # type: ignore[no-untyped-def]
    ev = main(await read(checker, kind, serve(fake, HTML)))
    assert ev.signal == "unknown" and not ev.readable and not ev.statement
    assert "status feed unreadable (HTML instead of JSON)" in ev.line


async def test_html_page_is_logged_once_and_asked_again_only_after_a_while(  # type: ignore[no-untyped-def]
    checker, fake, clock, mon_settings, caplog
):
    url = serve(fake, HTML, content_type="application/json")  # a wrong type header changes nothing
    path = url.split(str(fake.port), 1)[1]
    src = source("statuspage", url, component="Codespaces", official=True)
    with caplog.at_level(logging.WARNING, logger="bot.monitor.sources"):
        await checker.check(src)
        hits = fake.hits[path]
        for _ in range(5):
            clock.advance(mon_settings.feed_cache_s + 1)  # past the cache, within the back-off
            ev = await checker.check(src)
            assert "HTML instead of JSON" in ev.line and "next try" in ev.line
        assert fake.hits[path] == hits
        clock.advance(mon_settings.wrong_format_retry_s)
        await checker.check(src)
        assert fake.hits[path] == hits + 1  # asked again after the back-off…
        clock.advance(mon_settings.wrong_format_retry_s + 1)
        await checker.check(src)
        assert fake.hits[path] == hits + 1  # …which doubled
    warnings = [r for r in caplog.records if "HTML instead of JSON" in r.getMessage()]
    assert len(warnings) == 1
