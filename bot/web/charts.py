"""Geometry for the page's inline SVG: the uptime bar, the sparkline, the response-time chart.

Pure functions from the data classes to numbers and short strings; the templates draw them.
No JavaScript: a day with an incident is its own link to an anchor the stylesheet reveals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.monitor.history import DAY, HOUR, Point
from bot.web.data import Day

BAD = frozenset({"degraded", "down", "maintenance"})


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive days drawn as one rectangle; a day of interest stands alone and links."""

    x: int  # first day's index
    width: int  # days
    status: str  # a verdict status or "none"
    first: Day
    last: Day

    @property
    def link(self) -> bool:
        """A day with incidents links to its panel (which lists them)."""
        return self.width == 1 and bool(self.first.incidents)

    @property
    def titled(self) -> bool:
        """Tooltips only where something happened: plain runs stay small."""
        return self.width == 1 and (bool(self.first.incidents) or self.first.status in BAD)

    @property
    def label(self) -> str:
        what = "no data" if self.status == "none" else self.status
        if self.width == 1:
            up = "" if self.first.uptime is None else f", {self.first.uptime * 100:.1f}% up"
            n = len(self.first.incidents)
            inc = f", {n} incident{'s' if n != 1 else ''}" if n else ""
            return f"{self.first.date}: {what}{up}{inc}"
        return f"{self.first.date} to {self.last.date}: {what}"


def runs(days: Sequence[Day]) -> list[Run]:
    out: list[Run] = []
    for i, d in enumerate(days):
        alone = bool(d.incidents) or d.status in BAD
        prev = out[-1] if out else None
        if prev is not None and not alone and not prev.titled and prev.status == d.status:
            out[-1] = Run(prev.x, prev.width + 1, prev.status, prev.first, d)
        else:
            out.append(Run(i, 1, d.status, d, d))
    return out


def sparkline(values: Sequence[float | None], width: float = 48, height: float = 12) -> str:
    """SVG polyline points for hourly latencies (gaps skipped); empty when fewer than two."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return ""
    top = max(v for _, v in known) or 1.0
    n = max(len(values) - 1, 1)
    return " ".join(
        f"{i * width / n:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in known
    )


@dataclass(frozen=True, slots=True)
class Mark:
    x: float
    width: float
    status: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    points: str  # polyline of response times
    max_ms: float
    marks: tuple[Mark, ...]  # spans when the platform was not up
    left: str  # axis labels
    right: str

    @property
    def empty(self) -> bool:
        return not self.points and not self.marks


def latency_chart(
    points: Sequence[Point], now: float, span: str, width: int = 300, height: int = 80
) -> Chart:
    """Response time over the span (24 h of checks or 7 d of hourly averages)."""
    length = DAY if span == "24h" else 7 * DAY
    start = now - length
    lat = [p.latency_ms for p in points if p.latency_ms is not None]
    top = max(lat) * 1.1 if lat else 1.0

    def x(t: float) -> float:
        return max(0.0, min(width, (t - start) / length * width))

    pts = " ".join(
        f"{x(p.at):.1f},{height - (p.latency_ms / top) * (height - 4):.1f}"
        for p in points
        if p.latency_ms is not None
    )
    marks: list[Mark] = []
    step = HOUR if span == "7d" else 0.0
    for p in points:
        if p.status in BAD:
            w = max(x(p.at + (p.width_s or step or length / 288)) - x(p.at), 1.0)
            marks.append(Mark(round(x(p.at), 1), round(w, 1), p.status))
    return Chart(
        width=width,
        height=height,
        points=pts if len(lat) > 1 else "",
        max_ms=round(max(lat), 0) if lat else 0.0,
        marks=tuple(marks),
        left="24 h ago" if span == "24h" else "7 days ago",
        right="now",
    )
