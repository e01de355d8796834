"""A phone-readable PNG of response time with up/down bands (matplotlib Agg, imported lazily)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

from bot.monitor.history import Point

BAND = {
    "up": "#2e7d32",
    "degraded": "#f9a825",
    "down": "#c62828",
    "maintenance": "#1565c0",
    "unknown": "#9e9e9e",
}


def _segments(points: Sequence[Point], end: float) -> list[tuple[float, float, str]]:
    """Consecutive samples with one status, as (start, stop, status) spans."""
    out: list[tuple[float, float, str]] = []
    for i, p in enumerate(points):
        stop = points[i + 1].at if i + 1 < len(points) else min(end, p.at + max(p.width_s, 1))
        if out and out[-1][2] == p.status and abs(out[-1][1] - p.at) < 1e-6:
            out[-1] = (out[-1][0], stop, p.status)
        else:
            out.append((p.at, stop, p.status))
    return out


def render_png(
    points: Sequence[Point],
    *,
    title: str,
    now: float,
    span: str = "24h",
    width_px: int = 800,
    height_px: int = 450,
) -> bytes:
    """Response time (line) over coloured status bands; large fonts for a phone screen."""
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)  # no pyplot, no global backend switch: safe in threads
    ax = fig.add_subplot(1, 1, 1)
    window = 86400.0 if span == "24h" else 7 * 86400.0

    def dt(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    for start, stop, status in _segments(points, now):
        alpha = 0.15 if status == "up" else 0.45  # problems stand out
        ax.axvspan(dt(start), dt(stop), color=BAND.get(status, BAND["unknown"]), alpha=alpha, lw=0)
    known = [p.latency_ms for p in points if p.latency_ms is not None]
    if known:  # NaN breaks the line where a check had no answer
        xs = [dt(p.at + p.width_s / 2) for p in points]
        ys = [float("nan") if p.latency_ms is None else p.latency_ms for p in points]
        ax.plot(xs, ys, color="#212121", lw=2)
        ax.set_ylim(bottom=0, top=max(known) * 1.15 + 1)
    else:
        ax.set_ylim(0, 1)
        ax.text(
            0.5,
            0.5,
            "no latency data",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=16,
            color="#616161",
        )
    ax.set_xlim(dt(now - window), dt(now))
    ax.set_title(title, fontsize=18, loc="left")
    ax.set_ylabel("response ms", fontsize=14)
    ax.tick_params(labelsize=13)
    fmt = "%H:%M" if span == "24h" else "%a"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=UTC))
    ax.xaxis.set_major_locator(
        mdates.HourLocator(byhour=range(0, 24, 4), tz=UTC)
        if span == "24h"
        else mdates.DayLocator(tz=UTC)
    )
    ax.grid(axis="y", alpha=0.3)
    seen = [s for s in BAND if any(p.status == s for p in points)]
    if seen:
        ax.legend(
            handles=[Patch(color=BAND[s], alpha=0.5, label=s) for s in seen],
            loc="upper left",
            fontsize=12,
            ncols=len(seen),
            framealpha=0.8,
        )
    ax.set_xlabel("UTC", fontsize=12)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
