"""Bounded history (Uptime Kuma style): raw checks 24 h, hourly buckets 30 d, daily buckets 1 y.

Every check is written raw and folded at once into its hour and day bucket, so uptime and
average latency are sums over a few dozen rows however long the bot runs; :func:`prune` drops
what is past retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlite_utils

from bot.monitor.settings import MonitorSettings
from bot.monitor.verdict import Status

HOUR = 3600
DAY = 86400
COLUMNS = ("up", "degraded", "down", "maintenance", "unknown")


@dataclass(frozen=True, slots=True)
class Uptime:
    h24: float | None = None  # fraction 0..1, None when nothing was measured
    d7: float | None = None
    d30: float | None = None
    avg_latency_ms: float | None = None  # over 24 h


@dataclass(frozen=True, slots=True)
class Incident:
    platform: str
    status: str
    started_at: float
    ended_at: float | None
    title: str
    url: str | None
    official: bool

    @property
    def ongoing(self) -> bool:
        return self.ended_at is None

    def duration(self, now: float) -> float:
        return (self.ended_at or now) - self.started_at


@dataclass(frozen=True, slots=True)
class Point:
    at: float  # start of the sample (check time or bucket start)
    status: Status
    latency_ms: float | None
    width_s: float = 0.0  # bucket width, 0 for a raw check


def record(
    db: sqlite_utils.Database,
    platform: str,
    at: float,
    status: Status,
    latency_ms: float | None,
) -> None:
    """One check: a raw row plus its hourly and daily buckets (call inside a transaction)."""
    db.execute(
        "INSERT INTO monitor_checks (platform, at, status, latency_ms) VALUES (?, ?, ?, ?)",
        [platform, at, status, latency_ms],
    )
    col = status if status in COLUMNS else "unknown"
    lat_n = 0 if latency_ms is None else 1
    lat = latency_ms or 0.0
    for size, width in (("h", HOUR), ("d", DAY)):
        start = int(at // width * width)
        db.execute(
            f"INSERT INTO monitor_buckets (platform, size, start, {col}, lat_sum, lat_n, lat_max) "
            "VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (platform, size, start) DO UPDATE SET "
            f"{col} = {col} + 1, lat_sum = lat_sum + excluded.lat_sum, "
            "lat_n = lat_n + excluded.lat_n, "
            "lat_max = max(coalesce(lat_max, 0), coalesce(excluded.lat_max, 0))",
            [platform, size, start, lat, lat_n, latency_ms],
        )


def prune(db: sqlite_utils.Database, now: float, s: MonitorSettings) -> int:
    """Drop rows past retention; return how many went."""
    n = 0
    for sql, args in (
        ("DELETE FROM monitor_checks WHERE at < ?", [now - s.raw_retention_s]),
        (
            "DELETE FROM monitor_buckets WHERE size = 'h' AND start < ?",
            [now - s.hourly_retention_days * DAY],
        ),
        (
            "DELETE FROM monitor_buckets WHERE size = 'd' AND start < ?",
            [now - s.daily_retention_days * DAY],
        ),
        (
            "DELETE FROM monitor_incidents WHERE ended_at IS NOT NULL AND ended_at < ?",
            [now - s.daily_retention_days * DAY],
        ),
    ):
        n += db.execute(sql, args).rowcount
    return n


def _ratio(good: float | None, total: float | None) -> float | None:
    return None if not total else (good or 0) / total


def uptimes(
    db: sqlite_utils.Database, now: float, platforms: Sequence[str] | None = None
) -> dict[str, Uptime]:
    """Uptime over 24 h / 7 d (hourly buckets) and 30 d (daily buckets) for many platforms.

    Uptime counts degraded as up and leaves maintenance and unknown out, as Uptime Kuma does.
    """
    h24, d7, d30 = now - DAY, now - 7 * DAY, now - 30 * DAY  # bucket starts in the window
    where, ids = "", []
    if platforms is not None:
        where = f"platform IN ({','.join('?' * len(platforms))}) AND "
        ids = list(platforms)
    # Two range scans over the primary key (platform, size, start): hourly for 24 h and 7 d,
    # daily for 30 d.
    hourly = db.execute(
        "SELECT platform, "
        "sum(CASE WHEN start >= ? THEN up + degraded END), "
        "sum(CASE WHEN start >= ? THEN up + degraded + down END), "
        "sum(CASE WHEN start >= ? THEN lat_sum END), "
        "sum(CASE WHEN start >= ? THEN lat_n END), "
        "sum(up + degraded), sum(up + degraded + down) "
        f"FROM monitor_buckets WHERE {where}size = 'h' AND start >= ? GROUP BY platform",
        [h24, h24, h24, h24, *ids, d7],
    ).fetchall()
    daily = {
        r[0]: (r[1], r[2])
        for r in db.execute(
            "SELECT platform, sum(up + degraded), sum(up + degraded + down) "
            f"FROM monitor_buckets WHERE {where}size = 'd' AND start >= ? GROUP BY platform",
            [*ids, d30],
        ).fetchall()
    }
    rows = [(*r, *daily.get(r[0], (None, None))) for r in hourly]
    seen = {r[0] for r in hourly}
    rows += [
        (pid, None, None, None, None, None, None, *d) for pid, d in daily.items() if pid not in seen
    ]
    out: dict[str, Uptime] = {}
    for pid, g24, t24, ls, ln, g7, t7, g30, t30 in rows:
        out[pid] = Uptime(
            h24=_ratio(g24, t24),
            d7=_ratio(g7, t7),
            d30=_ratio(g30, t30),
            avg_latency_ms=round(ls / ln, 1) if ln else None,
        )
    return out


SPANS: dict[str, float] = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
"""The chart ranges: raw checks for 24 h, hourly buckets for 7 and 30 days (kept 30 d)."""
SPAN_LABELS: dict[str, str] = {"24h": "last 24 h", "7d": "last 7 days", "30d": "last 30 days"}


def span_label(span: str) -> str:
    return SPAN_LABELS.get(span, span)


def series(db: sqlite_utils.Database, platform: str, now: float, span: str = "24h") -> list[Point]:
    """Samples for a chart: raw checks over 24 h, hourly buckets over 7 or 30 days."""
    if span == "24h":
        rows = db.execute(
            "SELECT at, status, latency_ms FROM monitor_checks WHERE platform = ? AND at >= ? "
            "ORDER BY at",
            [platform, now - DAY],
        ).fetchall()
        return [Point(at=r[0], status=r[1], latency_ms=r[2]) for r in rows]
    if span not in SPANS:
        raise ValueError(f"span is one of {', '.join(SPANS)}")
    rows = db.execute(
        "SELECT start, up, degraded, down, maintenance, unknown, lat_sum, lat_n "
        "FROM monitor_buckets WHERE platform = ? AND size = 'h' AND start >= ? ORDER BY start",
        [platform, now - SPANS[span]],
    ).fetchall()
    return [
        Point(
            at=r[0],
            status=bucket_status(r[1], r[2], r[3], r[4], r[5]),
            latency_ms=round(r[6] / r[7], 1) if r[7] else None,
            width_s=HOUR,
        )
        for r in rows
    ]


def bucket_status(up: int, degraded: int, down: int, maintenance: int, unknown: int) -> Status:
    if down and down >= up + degraded:
        return "down"
    if down or degraded:
        return "degraded"
    if maintenance and maintenance >= up:
        return "maintenance"
    if up:
        return "up"
    return "unknown"


# -- incidents -------------------------------------------------------------------------------
def _incident(row: Iterable[object]) -> Incident:
    pid, status, started, ended, title, url, official = row
    return Incident(pid, status, started, ended, title, url, bool(official))  # type: ignore[arg-type]  # the incidents table's columns


_INC_COLS = "platform, status, started_at, ended_at, title, url, official"


def open_incident(db: sqlite_utils.Database, platform: str) -> Incident | None:
    row = db.execute(
        f"SELECT {_INC_COLS} FROM monitor_incidents WHERE platform = ? AND ended_at IS NULL "
        "ORDER BY started_at DESC LIMIT 1",
        [platform],
    ).fetchone()
    return None if row is None else _incident(row)


def last_incidents(
    db: sqlite_utils.Database, platforms: Sequence[str] | None = None
) -> dict[str, Incident]:
    """The most recent incident of each platform (ongoing or ended)."""
    where, args = "", []
    if platforms is not None:
        where = f" WHERE platform IN ({','.join('?' * len(platforms))})"
        args = list(platforms)
    rows = db.execute(
        f"SELECT {_INC_COLS}, max(started_at) FROM monitor_incidents{where} GROUP BY platform",
        args,
    ).fetchall()
    return {r[0]: _incident(r[:7]) for r in rows}


def track_incident(
    db: sqlite_utils.Database,
    platform: str,
    status: Status,
    at: float,
    *,
    since: float | None,
    title: str,
    url: str | None = None,
    official: bool = False,
) -> Incident | None:
    """Open, escalate or close the platform's incident for a new confirmed status.

    Returns the incident that this call closed (for the recovered alert's downtime).
    """
    current = open_incident(db, platform)
    if status in ("degraded", "down", "maintenance"):
        if current is None:
            db.execute(
                "INSERT INTO monitor_incidents (platform, status, started_at, title, url, official)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [platform, status, since or at, title, url, int(official)],
            )
        elif status != current.status and (
            status == "down" or current.status == "maintenance" or status == "maintenance"
        ):
            db.execute(
                "UPDATE monitor_incidents SET status = ? WHERE platform = ? AND ended_at IS NULL",
                [status, platform],
            )
        return None
    if status == "up" and current is not None:
        db.execute(
            "UPDATE monitor_incidents SET ended_at = ? WHERE platform = ? AND ended_at IS NULL",
            [at, platform],
        )
        return Incident(
            current.platform,
            current.status,
            current.started_at,
            at,
            current.title,
            current.url,
            current.official,
        )
    return None
