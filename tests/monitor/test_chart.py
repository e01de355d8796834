"""Charts: only the time with data, visible problem periods, a sentence when there is too little.

The PNGs are decoded (matplotlib's own PNG reader) and their pixels checked, not only their magic
bytes.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from bot.monitor import history
from bot.monitor.chart import BAND, render_png, segments, summary, too_little, x_range
from bot.monitor.history import HOUR, Point
from bot.monitor.settings import MonitorSettings
from bot.store import Store, transaction

NOW = 1_760_000_000.0
DAY = 86400.0


def checks(n: int, step: float = 300.0, bad: dict[int, str] | None = None) -> list[Point]:
    bad = bad or {}
    return [
        Point(
            NOW - (n - 1 - i) * step,
            bad.get(i, "up"),  # type: ignore[arg-type]
            None if bad.get(i) == "down" else 150.0 + i % 7,
        )
        for i in range(n)
    ]


def size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    return w, h


def pixels(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")[:, :, :3]


def columns_of(img: np.ndarray, colour: str) -> int:
    """How many pixel columns contain this colour (within a small tolerance)."""
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    hit = (np.abs(img - rgb) < 0.03).all(axis=2)
    return int(hit.any(axis=0).sum())


def test_no_data_and_two_checks_say_so_in_words() -> None:
    assert too_little([], "24h", NOW) == (
        "No checks recorded in the last 24 h yet, so there is nothing to draw."
    )
    note = too_little(checks(2), "24h", NOW)
    assert note is not None and note.startswith("Only 2 checks so far") and "too little" in note
    png = render_png(checks(2), title="Colab — last 24 h", now=NOW)
    w, h = size(png)
    assert w == 800 and h < 300  # a line of text, not an empty 800×450 axis
    assert columns_of(pixels(png), BAND["up"]) == 0  # nothing plotted


def test_a_few_minutes_of_data_fill_the_width() -> None:
    pts = checks(8)  # 35 minutes
    x0, x1 = x_range(pts, NOW, "24h")
    assert x0 == pts[0].at and abs(x1 - NOW) <= 1  # not 24 h with a thin line at the edge
    png = render_png(pts, title="Colab", now=NOW)
    assert size(png) == (800, 450)
    assert columns_of(pixels(png), BAND["up"]) > 500  # the ribbon spans the plot


def test_one_failed_check_in_a_day_is_visible() -> None:
    pts = checks(288, bad={150: "down"})
    png = render_png(pts, title="Colab", now=NOW)
    assert columns_of(pixels(png), BAND["down"]) >= 4
    assert summary(pts, NOW) == "down 5 min"


def test_down_and_degraded_periods_are_marked_and_counted() -> None:
    pts = checks(60, bad={**{i: "down" for i in range(10, 17)}, 40: "degraded"})
    img = pixels(render_png(pts, title="Colab", now=NOW))
    assert columns_of(img, BAND["down"]) > 40 and columns_of(img, BAND["degraded"]) >= 4
    assert summary(pts, NOW) == "degraded 5 min, down 35 min"


def test_a_gap_is_left_empty_not_guessed() -> None:
    first, second = checks(20), checks(20)
    pts = [Point(p.at - 6 * HOUR, p.status, p.latency_ms) for p in first] + second
    segs = segments(pts, NOW)  # 95 min, a gap of about 4 h, 95 min
    assert len(segs) == 2 and segs[1][0] - segs[0][1] > 4 * HOUR
    assert summary(pts, NOW) == "up whenever checked, no data for 4 h 10 min"


def test_thirty_days_of_hourly_history(store: Store) -> None:
    """History keeps hourly buckets for 30 days: a 30-day series and chart come from them."""
    start = NOW - 35 * DAY
    with transaction(store.db) as db:
        for i in range(35 * 24):  # one check an hour for 35 days; down for 3 h on day 20
            at = start + i * HOUR
            down = 20 * 24 <= i < 20 * 24 + 3
            history.record(db, "colab", at, "down" if down else "up", None if down else 120.0)
        history.prune(db, NOW, MonitorSettings())
        month = history.series(db, "colab", NOW, "30d")
        week = history.series(db, "colab", NOW, "7d")
    assert 30 * 24 - 1 <= len(month) <= 30 * 24 + 1 and len(week) <= 7 * 24 + 1
    assert month[0].at >= NOW - 30 * DAY and {p.status for p in month} == {"up", "down"}
    assert history.span_label("30d") == "last 30 days"
    png = render_png(month, title="Colab — last 30 days", now=NOW, span="30d")
    assert columns_of(pixels(png), BAND["down"]) >= 4
    assert summary(month, NOW) == "down 3 h"
