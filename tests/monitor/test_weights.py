"""Weaker signals: hints never change a status; unverified feeds never drive a verdict alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.monitor.verdict import MachineState, Observation, Thresholds, headline, step
from tests.monitor.helpers import platform, source

signal_st = st.sampled_from([None, "up", "degraded", "down"])
official_st = st.sampled_from([None, "up", "degraded", "down", "maintenance"])
hint_st = st.sampled_from([None, "degraded", "down"])


@settings(max_examples=300)
@given(st.lists(st.tuples(signal_st, official_st, hint_st), max_size=30))
def test_a_hint_never_changes_the_status(seq) -> None:  # type: ignore[no-untyped-def]
    with_hints = without = MachineState()
    th = Thresholds()
    for i, (probe, official, hint) in enumerate(seq):
        with_hints = step(
            with_hints, Observation(at=float(i), probe=probe, official=official, hint=hint), th
        )
        without = step(without, Observation(at=float(i), probe=probe, official=official), th)
        assert with_hints.status == without.status
        if hint and with_hints.status in ("up", "unknown"):
            assert with_hints.confidence == "possible problems"
            assert headline(with_hints).startswith("possible problems")


async def test_an_unverified_feed_is_only_a_hint(fake, service_factory) -> None:  # type: ignore[no-untyped-def]
    feed = fake.url("/statuspage/major_outage/summary.json")
    src = source("statuspage", feed, component="Codespaces", official=True, verified="unverified")
    svc = service_factory({"cs": platform("cs", [src])})
    v = await svc.check("cs")
    [ev] = v.evidence
    assert ev.signal == "down" and ev.weight == "hint" and not ev.statement
    assert ev.line.endswith("(unverified source)")
    assert v.status == "unknown" and v.confidence == "possible problems"
    view = await svc.verdict("cs")
    assert view.official_incident is None and view.hints


async def test_an_unverified_feed_saying_up_is_not_a_statement(fake, service_factory) -> None:  # type: ignore[no-untyped-def]
    src = source("statuspage", fake.url("/statuspage/ok/summary.json"), component="Codespaces")
    svc = service_factory({"cs": platform("cs", [src])})
    v = await svc.check("cs")
    assert v.evidence[0].weight == "info" and v.status == "unknown" and v.confidence is None


async def test_a_verified_feed_still_moves_the_verdict_at_once(fake, service_factory) -> None:  # type: ignore[no-untyped-def]
    feed = fake.url("/statuspage/major_outage/summary.json")
    src = source("statuspage", feed, component="Codespaces", official=True)
    svc = service_factory({"cs": platform("cs", [src])})
    v = await svc.check("cs")
    assert v.status == "down" and v.confidence == "problems detected"
