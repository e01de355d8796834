"""The value every source check returns: one piece of evidence about one platform."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Signal = Literal["up", "degraded", "down", "maintenance", "unknown"]
FailedStep = Literal["dns", "connect", "tls", "http", "timeout", "parse"]
Weight = Literal["full", "hint", "info"]
"""How much a piece of evidence may move a verdict.

``full``: an ordinary observation (an official statement or our own probe). ``hint``: a weaker
signal that is shown and can raise "possible problems", but never changes the status on its own
(a page-wide incident not tagged to the platform's component, an announcement that may be an
outage, a bad report from an unverified feed). ``info``: news such as a deprecation notice;
shown, never a verdict change.
"""

SIGNALS: tuple[Signal, ...] = ("up", "degraded", "down", "maintenance", "unknown")
NETWORK_STEPS: frozenset[str] = frozenset({"dns", "connect", "tls", "timeout"})
PROBE_KINDS: frozenset[str] = frozenset({"http", "binder_health"})
SEVERITY: dict[str, int] = {"unknown": -1, "up": 0, "degraded": 1, "maintenance": 2, "down": 3}


@dataclass(frozen=True, slots=True)
class Evidence:
    source: str
    kind: str
    official: bool
    signal: Signal
    line: str
    checked_at: float
    latency_ms: float | None = None
    failed_step: FailedStep | None = None
    incident_title: str | None = None
    incident_url: str | None = None
    url: str = ""
    readable: bool = True  # the source answered something we understood (even "503, unhealthy")
    weight: Weight = "full"

    @property
    def network_failure(self) -> bool:
        """Nothing came back at all: DNS, TCP, TLS or the clock ran out."""
        return self.failed_step in NETWORK_STEPS

    @property
    def statement(self) -> bool:
        """An official feed said something: this moves a verdict at once."""
        return self.official and self.readable and self.kind != "http" and self.weight == "full"

    @property
    def is_probe(self) -> bool:
        """Our own reachability probe (hysteresis applies)."""
        return self.kind in PROBE_KINDS and not self.statement and self.weight == "full"

    @property
    def hint(self) -> bool:
        """A weaker bad signal: "possible problems", never a status change on its own."""
        return self.weight == "hint" and self.signal in ("degraded", "down")

    @property
    def news(self) -> bool:
        return self.weight == "info"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def worst(signals: list[Signal] | tuple[Signal, ...]) -> Signal:
    known = [s for s in signals if s != "unknown"]
    return max(known, key=SEVERITY.__getitem__) if known else "unknown"
