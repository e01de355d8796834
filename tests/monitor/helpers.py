"""Helpers for monitor tests: a settable clock and minimal valid platforms."""

from __future__ import annotations

from datetime import date
from typing import Any

from knowledge.schema import Platform, StatusSource


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


VERIFIED = {"verified": date(2026, 1, 1), "evidence": "https://example.org/feed-docs"}


def source(kind: str, url: str, **kw: Any) -> StatusSource:
    """A status source; an official one counts as verified unless the test says otherwise."""
    if kw.get("official") and "verified" not in kw:
        kw = {**VERIFIED, **kw}
    return StatusSource(kind=kind, url=url, **kw)  # type: ignore[arg-type]


def platform(
    pid: str,
    sources: list[StatusSource],
    *,
    name: str | None = None,
    retired: bool = False,
    aliases: list[str] | None = None,
) -> Platform:
    lifecycle: dict[str, Any] = {"state": "alive"}
    if retired:
        lifecycle = {"state": "retired", "retired_on": date(2021, 1, 15), "successors": ["colab"]}
    return Platform(
        id=pid,
        name=name or pid.title(),
        aliases=aliases or [],
        url="https://example.org/",
        summary="A test platform.",
        lifecycle=lifecycle,
        accelerators={"gpu": "no", "tpu": "no"},
        limits={"summary": "small"},
        storage={"persistent": "no"},
        signup={"account": "no", "phone": "no", "card": "no"},
        access={"internet": "yes", "offline": "no", "bandwidth": "low"},
        languages=["python"],
        collaboration="none",
        private="no",
        move_steps=[] if retired else ["open it", "upload"],
        status_sources=sources,
        priority=50,
        last_verified=date(2026, 1, 1),
        sources=["https://example.org/"],
    )
