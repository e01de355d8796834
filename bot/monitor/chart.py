"""A phone-readable PNG of a platform's history (matplotlib Agg, imported lazily).

Only the time that has data is drawn (a new bot's first hour fills the width, not a thin line at
the right edge of an empty day). A status ribbon under the response-time line marks down,
degraded and maintenance periods in full colour, each at least a few pixels wide so that a
single failed check still shows. With too little data there is nothing to draw:
:func:`too_little` says so in a sentence (for a text reply), and :func:`render_png` draws that
sentence instead of an empty axis.
"""

from __future__ import annotations

import io
import itertools
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.monitor.history import SPANS, Point, span_label
from bot.text import duration

BAND = {
    "up": "#2e7d32",
    "degraded": "#f9a825",
    "down": "#c62828",
    "maintenance": "#1565c0",
    "unknown": "#bdbdbd",
}
WORD = {"degraded": "degraded", "down": "down", "maintenance": "maintenance"}
MIN_POINTS = 3  # fewer samples than this is not a chart
MIN_SPAN_S = {"24h": 15 * 60.0, "7d": 3 * 3600.0, "30d": 3 * 3600.0}
MIN_BAND_FRACTION = 0.006  # a problem band is never thinner than this share of the width


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %H:%M UTC").lstrip("0")


def _step(points: Sequence[Point]) -> float:
    """The usual distance between samples (a bucket's width, or the check interval)."""
    if points and points[0].width_s:
        return points[0].width_s
    gaps = [b.at - a.at for a, b in itertools.pairwise(points) if b.at > a.at]
    return statistics.median(gaps) if gaps else 300.0


def segments(points: Sequence[Point], end: float) -> list[tuple[float, float, str]]:
    """Consecutive samples with one status as (start, stop, status); gaps stay empty.

    A sample covers the time until the next one, but never more than three usual steps: when
    the bot was not running, the chart shows a gap, not a guess.
    """
    step = _step(points)
    out: list[tuple[float, float, str]] = []
    for i, p in enumerate(points):
        nxt = points[i + 1].at if i + 1 < len(points) else end
        stop = min(nxt, p.at + max(p.width_s, 3 * step))
        stop = max(stop, p.at + 1.0)
        if out and out[-1][2] == p.status and abs(out[-1][1] - p.at) < 1e-6:
            out[-1] = (out[-1][0], stop, p.status)
        else:
            out.append((p.at, stop, p.status))
    return out


def too_little(points: Sequence[Point], span: str, now: float) -> str | None:
    """A sentence saying why there is no chart yet, or None when there is enough to draw."""
    label = span_label(span)
    if not points:
        return f"No checks recorded in the {label} yet, so there is nothing to draw."
    covered = (points[-1].at + points[-1].width_s) - points[0].at
    unit = "hourly summaries" if points[0].width_s else "checks"
    if len(points) < MIN_POINTS or covered < MIN_SPAN_S.get(span, 0.0):
        return (
            f"Only {len(points)} {unit if len(points) != 1 else unit[:-1]} so far "
            f"(since {_hhmm(points[0].at)}): too little to draw a chart yet. "
            "It fills in as the checks run."
        )
    return None


def x_range(points: Sequence[Point], now: float, span: str) -> tuple[float, float]:
    """The drawn time: from the first sample to now (or to the last data, if it stopped)."""
    segs = segments(points, now)
    x0 = points[0].at
    x1 = max(now, segs[-1][1]) if now - segs[-1][1] < 3 * _step(points) else segs[-1][1]
    return x0, min(x1, x0 + SPANS.get(span, x1 - x0))


def summary(points: Sequence[Point], now: float) -> str:
    """``"down 35 min, degraded 10 min"`` over the drawn time, or ``"up the whole time"``."""
    totals: dict[str, float] = {}
    segs = segments(points, now)
    for start, stop, status in segs:
        totals[status] = totals.get(status, 0.0) + (stop - start)
    parts = [f"{WORD[s]} {duration(totals[s])}" for s in WORD if totals.get(s)]
    if not parts:
        parts.append("up whenever checked" if totals.get("up") else "status unknown")
    missing = (segs[-1][1] - segs[0][0]) - sum(totals.values()) if segs else 0.0
    if missing > 2 * _step(points):
        parts.append(f"no data for {duration(missing)}")
    elif parts == ["up whenever checked"]:
        parts = ["up the whole time"]
    return ", ".join(parts)


def render_png(
    points: Sequence[Point],
    *,
    title: str,
    now: float,
    span: str = "24h",
    width_px: int = 800,
    height_px: int = 450,
) -> bytes:
    """Response time (line) over a status ribbon; large fonts for a phone screen."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    note = too_little(points, span, now)
    if note is not None:
        fig = Figure(figsize=(width_px / dpi, 2.2), dpi=dpi)
        FigureCanvasAgg(fig)
        fig.text(0.03, 0.78, title, fontsize=18, ha="left", va="center")
        fig.text(0.03, 0.38, _wrap(note, 70), fontsize=14, ha="left", va="center", color="#424242")
        return _png(fig, dpi)

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)  # no pyplot, no global backend switch: safe in threads
    grid = fig.add_gridspec(2, 1, height_ratios=(5, 1), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    ribbon = fig.add_subplot(grid[1], sharex=ax)
    _draw(ax, ribbon, points, now, span)
    ax.set_title(f"{title}\n{summary(points, now)}", fontsize=16, loc="left")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.84, bottom=0.12)
    return _png(fig, dpi)


def _draw(ax: Any, ribbon: Any, points: Sequence[Point], now: float, span: str) -> None:
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    def dt(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    segs = segments(points, now)
    x0, x1 = x_range(points, now, span)
    width = max(x1 - x0, 1.0)
    least = width * MIN_BAND_FRACTION
    for start, stop, status in segs:
        if status != "up" and stop - start < least:  # one bad check must still show
            mid = (start + stop) / 2
            start, stop = mid - least / 2, mid + least / 2
        colour = BAND.get(status, BAND["unknown"])
        ribbon.axvspan(dt(start), dt(stop), color=colour, lw=0)
        if status in WORD:  # problem periods stand out behind the line too
            ax.axvspan(dt(start), dt(stop), color=colour, alpha=0.28, lw=0)
    known = [p.latency_ms for p in points if p.latency_ms is not None]
    if known:  # NaN breaks the line where a check had no answer, and across gaps
        step = _step(points)
        xs: list[datetime] = []
        ys: list[float] = []
        for i, p in enumerate(points):
            if i and p.at - points[i - 1].at > 3 * step:
                xs.append(dt(p.at - step))
                ys.append(float("nan"))
            xs.append(dt(p.at + p.width_s / 2))
            ys.append(float("nan") if p.latency_ms is None else p.latency_ms)
        ax.plot(xs, ys, color="#212121", lw=2, marker="o" if len(points) < 30 else None, ms=4)
        ax.set_ylim(bottom=0, top=max(known) * 1.15 + 1)
        ax.set_ylabel("response ms", fontsize=13)
        ax.grid(axis="y", alpha=0.3)
    else:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no response times: only official feeds are read",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=14,
            color="#616161",
        )
    ax.set_xlim(dt(x0), dt(x1))
    ax.tick_params(labelsize=12, labelbottom=False)
    ribbon.set_yticks([])
    ribbon.set_ylabel("status", fontsize=11, rotation=0, ha="right", va="center")
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=7)  # type: ignore[no-untyped-call]  # matplotlib.dates is untyped
    ribbon.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False)  # type: ignore[no-untyped-call]  # matplotlib.dates is untyped
    concise.formats = ["%Y", "%b", "%d %b", "%H:%M", "%H:%M", "%S.%f"]
    concise.zero_formats = ["", "%Y", "%d %b", "%d %b", "%H:%M", "%H:%M"]
    ribbon.xaxis.set_major_formatter(concise)
    ribbon.tick_params(labelsize=12)
    ribbon.set_xlabel("UTC", fontsize=11)
    seen = [s for s in BAND if any(seg[2] == s for seg in segs)]
    handles = [Patch(color=BAND[s], label=s) for s in seen]
    if any(b[0] - a[1] > 1.0 for a, b in itertools.pairwise(segs)):
        handles.append(Patch(facecolor="white", edgecolor="#9e9e9e", label="no data"))
    ax.legend(
        handles=handles,
        loc="lower left",
        fontsize=11,
        ncols=len(handles),
        framealpha=0.85,
    )


def _wrap(text: str, n: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, n))


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
