"""The verdict state machine, property-style, and the connectivity guard."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.monitor.evidence import Evidence
from bot.monitor.verdict import (
    MachineState,
    Observation,
    Thresholds,
    headline,
    is_offline,
    observe,
    step,
)

probe_st = st.sampled_from([None, "up", "degraded", "down"])
official_st = st.sampled_from([None, "up", "degraded", "down", "maintenance"])
obs_st = st.tuples(probe_st, official_st, st.booleans().map(lambda b: b and False))
th_st = st.builds(
    Thresholds,
    failure=st.integers(1, 5),
    success=st.integers(1, 4),
    official_grace=st.integers(0, 3),
)


def run(seq, th):  # type: ignore[no-untyped-def]
    state = MachineState()
    states = [state]
    for i, (p, o, off) in enumerate(seq):
        state = step(state, Observation(at=float(i), probe=p, official=o, offline=off), th)
        states.append(state)
    return states


@settings(max_examples=300)
@given(st.lists(st.tuples(probe_st, st.none(), st.just(False)), max_size=40), th_st)
def test_probes_need_threshold_consecutive_failures(seq, th):  # type: ignore[no-untyped-def]
    """Without official statements, up/unknown -> bad only after `failure` bad checks in a row,
    and bad -> up only after `success` good checks in a row."""
    states = run(seq, th)
    probes = [p for p, _, _ in seq]
    for i in range(1, len(states)):
        prev, cur = states[i - 1], states[i]
        answered = [p for p in probes[:i] if p is not None]
        if prev.status in ("up", "unknown") and cur.status in ("degraded", "down"):
            tail = answered[-th.failure :]
            assert len(tail) == th.failure and all(p in ("degraded", "down") for p in tail)
        if prev.status in ("degraded", "down") and cur.status == "up":
            tail = answered[-th.success :]
            assert len(tail) == th.success and all(p == "up" for p in tail)


@settings(max_examples=300)
@given(st.lists(st.tuples(probe_st, official_st, st.just(False)), max_size=40), th_st)
def test_invariants(seq, th):  # type: ignore[no-untyped-def]
    for s in run(seq, th):
        assert s.status in ("up", "degraded", "down", "maintenance", "unknown")
        assert s.fail_streak >= 0 and s.ok_streak >= 0
        assert not (s.fail_streak and s.ok_streak)
        assert s.fail_streak == 0 or s.status != "up" or s.pending in ("degraded", "down")
        if s.status in ("degraded", "down"):
            assert s.confidence == "problems detected"


@settings(max_examples=300)
@given(
    st.lists(st.tuples(probe_st, official_st, st.just(False)), max_size=30),
    st.sampled_from(["degraded", "down", "maintenance"]),
    th_st,
)
def test_official_statement_moves_at_once(prefix, official, th):  # type: ignore[no-untyped-def]
    state = run(prefix, th)[-1]
    nxt = step(state, Observation(at=1e6, probe="up", official=official), th)
    if official == "maintenance":
        assert nxt.status == "maintenance"
    else:
        assert nxt.status in (official, "down")  # never better than what the feed says
        assert nxt.by_official or nxt.probe_status == "down"


@settings(max_examples=300)
@given(
    st.lists(st.tuples(probe_st, official_st, st.just(False)), max_size=30),
    st.integers(1, 10),
    th_st,
)
def test_offline_changes_nothing_but_the_flag(prefix, n, th):  # type: ignore[no-untyped-def]
    state = run(prefix, th)[-1]
    cur = state
    for i in range(n):
        cur = step(cur, Observation(at=1e6 + i, probe="down", offline=True), th)
        assert cur.offline and cur.shown == "unknown" and cur.confidence is None
        assert (cur.status, cur.probe_status, cur.fail_streak, cur.ok_streak, cur.official) == (
            state.status,
            state.probe_status,
            state.fail_streak,
            state.ok_streak,
            state.official,
        )
    assert headline(cur).startswith("unknown — this bot cannot reach the internet")
    back = step(cur, Observation(at=2e6, probe="up"), th)
    assert not back.offline


@settings(max_examples=200)
@given(st.lists(st.tuples(probe_st, official_st, st.just(False)), max_size=30), th_st)
def test_enough_evidence_always_converges(prefix, th):  # type: ignore[no-untyped-def]
    state = run(prefix, th)[-1]
    down = state
    for i in range(th.failure):
        down = step(down, Observation(at=1e6 + i, probe="down", official="up"), th)
    assert down.status == "down"
    up = down
    for i in range(th.success):
        up = step(up, Observation(at=2e6 + i, probe="up", official="up"), th)
    assert up.status == "up"


def test_pending_then_down_then_recovered_with_defaults() -> None:
    th = Thresholds()
    s = step(MachineState(), Observation(0, probe="up"), th)
    assert s.status == "up" and s.since == 0
    s = step(s, Observation(1, probe="down"), th)
    assert s.status == "up" and s.pending == "down" and s.confidence == "possible problems"
    assert headline(s) == "possible problems (1 of 3 checks failed)"
    s = step(s, Observation(2, probe="down"), th)
    assert s.status == "up" and s.fail_streak == 2
    s = step(s, Observation(3, probe="down"), th)
    assert s.status == "down" and s.since == 3 and headline(s) == "down — problems detected"
    s = step(s, Observation(4, probe="up"), th)
    assert s.status == "down" and s.pending == "up"
    s = step(s, Observation(5, probe="up"), th)
    assert s.status == "up" and s.since == 5


def test_unreadable_official_feed_keeps_statement_for_grace() -> None:
    th = Thresholds(official_grace=2)
    s = step(MachineState(), Observation(0, probe="up", official="down"), th)
    assert s.status == "down" and s.by_official
    s = step(s, Observation(1, probe="up", official=None), th)
    s = step(s, Observation(2, probe="up", official=None), th)
    assert s.status == "down"
    s = step(s, Observation(3, probe="up", official=None), th)
    assert s.status == "up"


def test_roundtrip() -> None:
    s = step(MachineState(), Observation(0, probe="down", official="degraded"), Thresholds())
    assert MachineState.from_dict(s.to_dict()) == s


def ev(
    kind: str,
    signal: str,
    *,
    official: bool = False,
    step_: str | None = None,
    readable: bool = True,
) -> Evidence:
    return Evidence(
        source=kind,
        kind=kind,
        official=official,
        signal=signal,
        line="x",  # type: ignore[arg-type]
        checked_at=0,
        failed_step=step_,
        readable=readable,
    )  # type: ignore[arg-type]


def test_observe_channels() -> None:
    o = observe([ev("http", "down", step_="http"), ev("http", "up")], 0)
    assert o.probe == "degraded" and o.official is None
    o = observe([ev("http", "up"), ev("statuspage", "down", official=True)], 0)
    assert o.probe == "up" and o.official == "down"
    o = observe([ev("statuspage", "unknown", official=True, readable=False)], 0)
    assert o.official is None and o.probe is None
    # one Binder member of three unhealthy: the federation is degraded, not down
    members = [
        ev("binder_health", "down", official=True),
        ev("binder_health", "up", official=True),
        ev("binder_health", "up", official=True),
    ]
    assert observe(members, 0).official == "degraded"
    o = observe(
        [ev("statuspage", "maintenance", official=True), ev("google_cloud", "down", official=True)],
        0,
    )
    assert o.official == "maintenance"


def test_connectivity_guard() -> None:
    dns = ev("http", "down", step_="dns", readable=False)
    up = ev("http", "up")
    assert is_offline({"a": [dns], "b": [dns]}, None)
    assert not is_offline({"a": [dns]}, None)  # one platform alone could really be down
    assert is_offline({"a": [dns]}, False)
    assert not is_offline({"a": [dns], "b": [dns]}, True)  # the internet answers: they are down
    assert not is_offline({"a": [dns], "b": [up]}, None)
    assert is_offline({"a": [dns], "b": [up]}, False)  # control failed + failures
    assert not is_offline({"a": [up]}, False)  # control list blocked, but probes answer
    assert not is_offline({"a": [ev("http", "down", step_="http")], "b": [dns]}, None)
