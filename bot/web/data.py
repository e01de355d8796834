"""What the web pages read: plain frozen dataclasses from small sync functions over ``db``.

The functions here take a ``sqlite_utils.Database`` and run on the store's own thread through
``await store.call(fn)``; they reuse the monitor's readers (:func:`bot.monitor.view.load_views`,
:mod:`bot.monitor.history`) so the page says what ``/status`` says. Nothing here calls the
:class:`~bot.monitor.service.MonitorService`.

:class:`StatusData` is the seam: the routes only see that protocol. :class:`StoreStatusData`
implements it over a store; :class:`CachedStatusData` wraps any implementation so that
concurrent requests share one read (a thousand visitors during an outage cost one query).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import sqlite_utils

from bot.monitor.history import DAY, HOUR, Point, bucket_status, series
from bot.monitor.reports import Reports
from bot.monitor.settings import MonitorSettings
from bot.monitor.view import VerdictView, load_views
from bot.store import Store
from knowledge.ranking import rank
from knowledge.schema import Platform

T = TypeVar("T")
Clock = Callable[[], float]
MAX_CHART_POINTS = 300  # a 24 h chart at one check a minute is thinned to this many points


def safe_url(url: str | None) -> str | None:
    """``url`` when it is http(s), else None: a feed's link never becomes ``javascript:``."""
    if not url:
        return None
    low = url.strip().lower()
    return url.strip() if low.startswith(("https://", "http://")) else None


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class IncidentView:
    id: int
    platform_id: str
    platform_name: str
    status: str  # the worst status it reached: degraded, down, maintenance
    started_at: float
    ended_at: float | None
    title: str  # what was seen: the official incident's title or our probe's line
    url: str | None  # the official incident page (http(s) only)
    official: bool  # declared by the platform's own status feed

    @property
    def ongoing(self) -> bool:
        return self.ended_at is None

    def duration_s(self, now: float) -> float:
        return max(0.0, (self.ended_at or now) - self.started_at)


@dataclass(frozen=True, slots=True)
class Day:
    date: str  # YYYY-MM-DD, UTC
    start: float
    status: str  # a verdict status, or "none" when nothing was measured that day
    uptime: float | None
    incidents: tuple[IncidentView, ...] = ()


@dataclass(frozen=True, slots=True)
class Alternative:
    platform_id: str
    name: str
    reason: str
    first_step: str | None
    down: bool


@dataclass(frozen=True, slots=True)
class Successor:
    name: str
    platform_id: str | None  # when the successor is a platform this bot knows


@dataclass(frozen=True, slots=True)
class PlatformStatus:
    view: VerdictView  # verdict, evidence with ages, uptime, reports (counts), last incident
    url: str  # the platform's own site
    summary: str
    days: tuple[Day, ...] = ()  # oldest first
    latency: tuple[float | None, ...] = ()  # hourly average ms over the last 24 h, oldest first
    alternatives: tuple[Alternative, ...] = ()  # when it is not up: where to go instead
    successors: tuple[Successor, ...] = ()  # when retired
    retired_on: str | None = None
    retired_note: str = ""

    @property
    def id(self) -> str:
        return self.view.platform_id

    @property
    def status(self) -> str:
        return self.view.status


@dataclass(frozen=True, slots=True)
class Overview:
    now: float
    platforms: tuple[PlatformStatus, ...]  # alive platforms, knowledge-base order
    retired: tuple[PlatformStatus, ...]
    ongoing: tuple[IncidentView, ...]
    past: tuple[IncidentView, ...]  # newest first
    offline: bool  # every probe failed: this bot cannot reach the internet
    updated_at: float | None  # the newest check

    def get(self, pid: str) -> PlatformStatus | None:
        return next((p for p in (*self.platforms, *self.retired) if p.id == pid), None)


@dataclass(frozen=True, slots=True)
class PlatformDetail:
    now: float
    status: PlatformStatus
    span: str  # "24h" or "7d"
    series: tuple[Point, ...]  # response-time samples for the chart
    incidents: tuple[IncidentView, ...]  # newest first


@dataclass(frozen=True, slots=True)
class Health:
    last_check_at: float | None  # the monitor's newest check in the store
    monitored: int  # platforms with a status source


class StatusData(Protocol):
    """What the web side reads. The lead may re-point it (e.g. at a split monitor service)."""

    @property
    def platforms(self) -> Mapping[str, Platform]: ...

    async def overview(self) -> Overview: ...

    async def platform(self, pid: str, span: str = "24h") -> PlatformDetail | None: ...

    async def incidents(
        self, pid: str | None = None, limit: int = 50
    ) -> tuple[IncidentView, ...]: ...

    async def health(self) -> Health: ...

    async def write_check(self) -> None:
        """Write to the database (raises when it is not writable)."""


# -- sync readers over db (run on the store's thread) -------------------------------------------
_INC = "id, platform, status, started_at, ended_at, title, url, official"


def _incidents(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    where: str,
    args: Sequence[Any],
    limit: int,
) -> tuple[IncidentView, ...]:
    rows = db.execute(
        f"SELECT {_INC} FROM monitor_incidents {where} ORDER BY started_at DESC, id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    out = []
    for iid, pid, status, started, ended, title, url, official in rows:
        p = platforms.get(pid)
        if p is None:  # a platform removed from the config since
            continue
        out.append(
            IncidentView(
                id=int(iid),
                platform_id=pid,
                platform_name=p.name,
                status=str(status),
                started_at=float(started),
                ended_at=None if ended is None else float(ended),
                title=str(title),
                url=safe_url(url),
                official=bool(official),
            )
        )
    return tuple(out)


def read_incidents(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    pid: str | None = None,
    limit: int = 50,
) -> tuple[IncidentView, ...]:
    """Incidents newest first, ongoing and past, of one platform or all."""
    if pid is None:
        return _incidents(db, platforms, "", [], limit)
    return _incidents(db, platforms, "WHERE platform = ?", [pid], limit)


def read_days(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    ids: Sequence[str],
    now: float,
    days: int,
) -> dict[str, tuple[Day, ...]]:
    """Per platform, ``days`` UTC days ending today: status, uptime and that day's incidents."""
    today = int(now // DAY * DAY)
    first = today - (days - 1) * DAY
    marks = ",".join("?" * len(ids))
    buckets: dict[tuple[str, int], tuple[int, int, int, int, int]] = {}
    for pid, start, up, deg, down, mnt, unk in db.execute(
        "SELECT platform, start, up, degraded, down, maintenance, unknown FROM monitor_buckets "
        f"WHERE size = 'd' AND start >= ? AND platform IN ({marks})",
        [first, *ids],
    ).fetchall():
        buckets[(pid, int(start))] = (up, deg, down, mnt, unk)
    incs = _incidents(
        db,
        platforms,
        f"WHERE platform IN ({marks}) AND (ended_at IS NULL OR ended_at >= ?)",
        [*ids, first],
        10_000,
    )
    by_day: dict[tuple[str, int], list[IncidentView]] = {}
    for inc in reversed(incs):  # oldest first within a day
        d = max(first, int(inc.started_at // DAY * DAY))
        last = int((inc.ended_at or now) // DAY * DAY)
        while d <= min(last, today):
            by_day.setdefault((inc.platform_id, d), []).append(inc)
            d += DAY
    out: dict[str, tuple[Day, ...]] = {}
    for pid in ids:
        row: list[Day] = []
        for i in range(days):
            start = first + i * DAY
            b = buckets.get((pid, start))
            if b is None:
                status, uptime = "none", None
            else:
                up, deg, down, mnt, unk = b
                status = bucket_status(up, deg, down, mnt, unk)
                total = up + deg + down
                uptime = (up + deg) / total if total else None
            row.append(
                Day(
                    day_of(start), float(start), status, uptime, tuple(by_day.get((pid, start), ()))
                )
            )
        out[pid] = tuple(row)
    return out


def read_latency(
    db: sqlite_utils.Database, ids: Sequence[str], now: float
) -> dict[str, tuple[float | None, ...]]:
    """Hourly average response time over the last 24 hours (24 values, None = no sample)."""
    first = int(now // HOUR * HOUR) - 23 * HOUR
    marks = ",".join("?" * len(ids))
    vals: dict[tuple[str, int], float] = {}
    for pid, start, lat_sum, lat_n in db.execute(
        "SELECT platform, start, lat_sum, lat_n FROM monitor_buckets "
        f"WHERE size = 'h' AND start >= ? AND platform IN ({marks}) AND lat_n > 0",
        [first, *ids],
    ).fetchall():
        vals[(pid, int(start))] = round(lat_sum / lat_n, 1)
    return {pid: tuple(vals.get((pid, first + i * HOUR)) for i in range(24)) for pid in ids}


def _alternatives(
    platforms: Mapping[str, Platform], pid: str, down: set[str], limit: int = 3
) -> tuple[Alternative, ...]:
    """The same ranking as ``/alternatives <platform>`` with no needs."""
    picks = rank([p for p in platforms.values() if p.alive], exclude=pid, down=down, limit=limit)
    return tuple(
        Alternative(
            platform_id=k.platform.id,
            name=k.platform.name,
            reason=k.platform.strengths[0] if k.platform.strengths else k.platform.summary,
            first_step=k.platform.move_steps[0] if k.platform.move_steps else None,
            down=k.down,
        )
        for k in picks
    )


def _successors(platforms: Mapping[str, Platform], p: Platform) -> tuple[Successor, ...]:
    by_name = {q.name.lower(): q.id for q in platforms.values()}
    out = []
    for s in p.lifecycle.successors:
        key = s.strip().lower()
        pid = key if key in platforms else by_name.get(key)
        out.append(Successor(platforms[pid].name if pid else s, pid))
    return tuple(out)


def read_statuses(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    settings: MonitorSettings,
    reports: Reports,
    now: float,
    days: int,
    *,
    ids: Sequence[str] | None = None,
) -> list[PlatformStatus]:
    """Every platform's (or ``ids``') status: the views ``/status`` shows, plus the page's extras."""
    ids = list(platforms) if ids is None else list(ids)
    views = load_views(
        db,
        platforms,
        ids,
        now,
        reports=reports,
        stale_after={pid: settings.stale_after(pid) for pid in ids},
        threshold=settings.failure_threshold,
    )
    alive_ids = [v.platform_id for v in views if not v.retired]
    bars = read_days(db, platforms, alive_ids, now, days) if alive_ids else {}
    lat = read_latency(db, alive_ids, now) if alive_ids else {}
    # Down platforms go to the bottom of the ranking: the same rule as /alternatives.
    down = {
        pid
        for pid, status in db.execute("SELECT platform, status FROM monitor_state").fetchall()
        if status == "down"
    }
    if any(v.offline for v in views):
        down = set()
    out = []
    for v in views:
        p = platforms[v.platform_id]
        alts: tuple[Alternative, ...] = ()
        if v.status in ("down", "degraded", "maintenance"):
            alts = _alternatives(platforms, v.platform_id, down)
        out.append(
            PlatformStatus(
                view=v,
                url=str(p.url),
                summary=p.summary,
                days=bars.get(v.platform_id, ()),
                latency=lat.get(v.platform_id, ()),
                alternatives=alts,
                successors=_successors(platforms, p) if v.retired else (),
                retired_on=(p.lifecycle.retired_on.isoformat() if p.lifecycle.retired_on else None),
                retired_note=p.lifecycle.note,
            )
        )
    return out


def read_overview(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    settings: MonitorSettings,
    reports: Reports,
    now: float,
    *,
    days: int = 90,
    incidents: int = 50,
) -> Overview:
    statuses = read_statuses(db, platforms, settings, reports, now, days)
    incs = read_incidents(db, platforms, None, incidents)
    ongoing = _incidents(db, platforms, "WHERE ended_at IS NULL", [], 1000)
    checked = [s.view.checked_at for s in statuses if s.view.checked_at is not None]
    return Overview(
        now=now,
        platforms=tuple(s for s in statuses if not s.view.retired),
        retired=tuple(s for s in statuses if s.view.retired),
        ongoing=ongoing,
        past=tuple(i for i in incs if not i.ongoing),
        offline=any(s.view.offline for s in statuses),
        updated_at=max(checked) if checked else None,
    )


def read_platform(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    settings: MonitorSettings,
    reports: Reports,
    now: float,
    pid: str,
    *,
    span: str = "24h",
    days: int = 90,
    incidents: int = 50,
) -> PlatformDetail | None:
    if pid not in platforms:
        return None
    (status,) = read_statuses(db, platforms, settings, reports, now, days, ids=[pid])
    points = series(db, pid, now, span)
    if len(points) > MAX_CHART_POINTS:
        step = len(points) / MAX_CHART_POINTS
        points = [points[int(i * step)] for i in range(MAX_CHART_POINTS)]
    return PlatformDetail(
        now=now,
        status=status,
        span=span,
        series=tuple(points),
        incidents=read_incidents(db, platforms, pid, incidents),
    )


def read_health(db: sqlite_utils.Database, platforms: Mapping[str, Platform]) -> Health:
    row = db.execute("SELECT max(checked_at) FROM monitor_state").fetchone()
    monitored = sum(1 for p in platforms.values() if p.alive and p.status_sources)
    return Health(last_check_at=row[0] if row and row[0] is not None else None, monitored=monitored)


def write_check(db: sqlite_utils.Database, now: float) -> None:
    """A real write (``/readyz``): fails on a read-only file, a full disk or a lock held too long."""
    with db.conn:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('web.ready_check', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [str(now)],
        )


# -- the implementations ------------------------------------------------------------------------
@dataclass
class StoreStatusData:
    """:class:`StatusData` over the store: every read runs via ``await store.call(fn)``."""

    store: Store
    knowledge_platforms: Mapping[str, Platform]
    monitor_settings: MonitorSettings = field(default_factory=MonitorSettings)
    clock: Clock = time.time
    days: int = 90
    incidents_limit: int = 50

    def __post_init__(self) -> None:
        self._reports = Reports(self.monitor_settings)

    @property
    def platforms(self) -> Mapping[str, Platform]:
        return self.knowledge_platforms

    async def overview(self) -> Overview:
        now = self.clock()
        return await self.store.call(
            lambda db: read_overview(
                db,
                self.knowledge_platforms,
                self.monitor_settings,
                self._reports,
                now,
                days=self.days,
                incidents=self.incidents_limit,
            )
        )

    async def platform(self, pid: str, span: str = "24h") -> PlatformDetail | None:
        now = self.clock()
        return await self.store.call(
            lambda db: read_platform(
                db,
                self.knowledge_platforms,
                self.monitor_settings,
                self._reports,
                now,
                pid,
                span=span,
                days=self.days,
                incidents=self.incidents_limit,
            )
        )

    async def incidents(self, pid: str | None = None, limit: int = 50) -> tuple[IncidentView, ...]:
        return await self.store.call(
            lambda db: read_incidents(db, self.knowledge_platforms, pid, limit)
        )

    async def health(self) -> Health:
        return await self.store.call(lambda db: read_health(db, self.knowledge_platforms))

    async def write_check(self) -> None:
        now = self.clock()
        await self.store.call(lambda db: write_check(db, now))


class CachedStatusData:
    """Wraps a :class:`StatusData`: concurrent identical reads share one, reused ``ttl_s``.

    ``ttl_s = 0`` still coalesces reads in flight. Health and the write check are never cached.
    """

    def __init__(
        self, inner: StatusData, ttl_s: float, *, monotonic: Clock = time.monotonic
    ) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._done: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._inflight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    @property
    def platforms(self) -> Mapping[str, Platform]:
        return self.inner.platforms

    async def _get(self, key: tuple[Any, ...], read: Callable[[], Awaitable[T]]) -> T:
        hit = self._done.get(key)
        if hit is not None and self._monotonic() - hit[0] < self.ttl_s:
            return hit[1]  # type: ignore[no-any-return]  # stored by this key's read() below
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(read())
            self._inflight[key] = fut
            fut.add_done_callback(lambda f: self._landed(key, f))
        return await asyncio.shield(fut)

    def _landed(self, key: tuple[Any, ...], fut: asyncio.Future[Any]) -> None:
        self._inflight.pop(key, None)
        if fut.cancelled() or fut.exception() is not None:
            return
        if self.ttl_s > 0:
            if len(self._done) > 256:  # bounded: keys are (route, platform id, span)
                self._done.clear()
            self._done[key] = (self._monotonic(), fut.result())

    async def overview(self) -> Overview:
        return await self._get(("overview",), self.inner.overview)

    async def platform(self, pid: str, span: str = "24h") -> PlatformDetail | None:
        return await self._get(("platform", pid, span), lambda: self.inner.platform(pid, span))

    async def incidents(self, pid: str | None = None, limit: int = 50) -> tuple[IncidentView, ...]:
        return await self._get(("incidents", pid, limit), lambda: self.inner.incidents(pid, limit))

    async def health(self) -> Health:
        return await self.inner.health()

    async def write_check(self) -> None:
        await self.inner.write_check()
