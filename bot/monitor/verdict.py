"""The pure verdict state machine of one platform, and the bot's own connectivity guard.

Own probes go through hysteresis (``failure`` consecutive bad checks before down, PENDING
before that; ``success`` good checks before recovered). An official statement (an incident or
maintenance in a status feed) moves the verdict at once. An offline observation (this bot cannot
reach the internet) changes nothing but the ``offline`` flag: it is never evidence of an outage.
A hint (a weaker signal, see :data:`bot.monitor.evidence.Weight`) never changes the status: it
only raises "possible problems" while it lasts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from bot.monitor.evidence import SEVERITY, Evidence, Signal, worst

Status = Signal
Confidence = Literal["possible problems", "problems detected"]
BAD: frozenset[str] = frozenset({"degraded", "down"})
OFFLINE_LINE = "unknown — this bot cannot reach the internet right now"


@dataclass(frozen=True, slots=True)
class Thresholds:
    failure: int = 3
    success: int = 2
    official_grace: int = 2  # unreadable official feeds keep their last statement this many checks


@dataclass(frozen=True, slots=True)
class Observation:
    at: float
    probe: Signal | None = None  # own probes, aggregated: up | degraded | down | None
    official: Signal | None = None  # official statements, aggregated; None = none readable
    offline: bool = False
    hint: Signal | None = None  # weaker signals (degraded | down), aggregated; None = none


@dataclass(frozen=True, slots=True)
class MachineState:
    status: Status = "unknown"  # combined, confirmed
    probe_status: Status = "unknown"  # own probes after hysteresis
    official: Signal | None = None  # last official statement
    official_misses: int = 0
    fail_streak: int = 0
    ok_streak: int = 0
    pending: Status | None = None  # own probes heading here, not confirmed yet
    since: float | None = None  # when ``status`` last changed
    checked_at: float | None = None
    offline: bool = False
    hint: Signal | None = None  # a weaker bad signal seen in the last check

    @property
    def shown(self) -> Status:
        return "unknown" if self.offline else self.status

    @property
    def by_official(self) -> bool:
        o = self.official
        return (
            o in ("degraded", "down", "maintenance") and SEVERITY[o] >= SEVERITY[self.probe_status]
        )

    @property
    def confidence(self) -> Confidence | None:
        if self.offline:
            return None
        if self.status in BAD:
            return "problems detected"
        if self.pending in BAD and self.status != "maintenance":
            return "possible problems"
        if self.hint in BAD and self.status != "maintenance":
            return "possible problems"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MachineState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def step(state: MachineState, obs: Observation, th: Thresholds = Thresholds()) -> MachineState:
    """One check: the next state. Pure and total."""
    if obs.offline:
        return replace(state, offline=True, checked_at=obs.at)
    p = obs.probe
    ps, fails, oks = state.probe_status, state.fail_streak, state.ok_streak
    pending = state.pending if p is None else None  # no probe answer: nothing new about them
    if p in BAD:
        fails, oks = fails + 1, 0
        if ps in BAD or fails >= th.failure:
            ps = p
        else:
            pending = p
    elif p == "up":
        fails, oks = 0, oks + 1
        if ps in BAD and oks < th.success:
            pending = "up"
        else:
            ps = "up"
    official, misses = obs.official, 0
    if official is None or official == "unknown":
        misses = state.official_misses + 1
        official = state.official if misses <= th.official_grace else None
    status = combine(ps, official)
    since = obs.at if status != state.status or state.since is None else state.since
    return MachineState(
        status=status,
        probe_status=ps,
        official=official,
        official_misses=misses,
        fail_streak=fails,
        ok_streak=oks,
        pending=pending,
        since=since,
        checked_at=obs.at,
        offline=False,
        hint=obs.hint if obs.hint in BAD else None,
    )


def combine(probe_status: Status, official: Signal | None) -> Status:
    if official == "maintenance":
        return "maintenance"
    known = [s for s in (probe_status, official) if s not in (None, "unknown")]
    return worst(known) if known else "unknown"


def federate(signals: Sequence[Signal]) -> Signal | None:
    """Several probes of one platform: all down = down, some bad = degraded."""
    known = [s for s in signals if s in ("up", "degraded", "down")]
    if not known:
        return None
    if all(s == "down" for s in known):
        return "down"
    if any(s in BAD for s in known):
        return "degraded"
    return "up"


def observe(evidence: Iterable[Evidence], at: float, *, offline: bool = False) -> Observation:
    """Aggregate one check's evidence into the two channels of the machine."""
    ev = list(evidence)
    probe = federate([e.signal for e in ev if e.is_probe])
    statements = [e for e in ev if e.statement and e.signal != "unknown"]
    groups: dict[str, list[Signal]] = {}
    for e in statements:
        groups.setdefault(e.kind, []).append(e.signal)
    official: list[Signal] = []
    for kind, sigs in groups.items():
        maint = [s for s in sigs if s == "maintenance"]
        if kind == "binder_health":  # a federation: one member down is "degraded"
            f = federate(sigs)
            if f is not None:
                official.append(f)
        else:
            official.extend(s for s in sigs if s != "maintenance")
        official.extend(maint[:1])
    agg: Signal | None = None
    if official:
        agg = "maintenance" if "maintenance" in official else worst(official)
    hints = [e.signal for e in ev if e.hint]
    hint = worst(hints) if hints else None
    return Observation(at=at, probe=probe, official=agg, offline=offline, hint=hint)


def is_offline(
    evidence_by_platform: Mapping[str, Sequence[Evidence]],
    control_ok: bool | None,
    *,
    min_platforms: int = 2,
) -> bool:
    """Is it this bot that cannot reach the internet?

    Offline when a control check failed while something else failed too, or when every
    probe of a sweep failed at the network level and no control check says otherwise.
    """
    flags = [e.network_failure for evs in evidence_by_platform.values() for e in evs]
    if not flags:
        return control_ok is False
    if control_ok is False and any(flags):
        return True
    if all(flags) and control_ok is None:
        return len([1 for evs in evidence_by_platform.values() if evs]) >= min_platforms
    return False


def headline(state: MachineState, *, net_offline: bool = False, threshold: int = 3) -> str:
    """A short, platform-neutral verdict phrase."""
    if net_offline or state.offline:
        return OFFLINE_LINE
    s = state.status
    if s == "maintenance":
        return "maintenance"
    if s in BAD:
        return f"{s} — problems detected"
    if state.confidence == "possible problems":
        if state.pending in BAD:
            return f"possible problems ({state.fail_streak} of {threshold} checks failed)"
        return "possible problems (an official notice, not confirmed for this service)"
    if s == "up":
        return "up"
    return "unknown — not checked yet" if state.checked_at is None else "unknown"
