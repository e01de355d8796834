"""The monitor service: runs the checks, keeps verdicts, history and alerts in SQLite.

Platform-neutral: it knows platforms (the knowledge base) and a store, nothing about chats
beyond opaque ``(adapter, chat_id)`` keys. State lives in SQLite, so the running bot,
``python -m bot ask`` and ``python -m bot probe`` see the same verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import logging
import random
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from sqlite_utils import Database

from bot.monitor import alerts, history
from bot.monitor.db import dumps, loads, transaction
from bot.monitor.evidence import Evidence
from bot.monitor.fetch import Fetcher
from bot.monitor.reports import ReportOutcome, Reports
from bot.monitor.settings import MonitorSettings
from bot.monitor.sources import Checker
from bot.monitor.verdict import (
    Confidence,
    MachineState,
    Status,
    Thresholds,
    is_offline,
    observe,
    step,
)
from bot.monitor.view import VerdictView, load_views
from bot.store import Store
from knowledge.schema import Platform

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class Default(enum.Enum):
    DEFAULT = "default"


DEFAULT = Default.DEFAULT


class UnknownPlatform(KeyError):
    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(name)
        self.name = name
        self.suggestions = tuple(suggestions)

    def __str__(self) -> str:
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        return f"unknown platform '{self.name}'{hint}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check of one platform."""

    platform_id: str
    status: Status  # as shown: "unknown" when this bot is offline
    confidence: Confidence | None
    offline: bool
    pending: Status | None
    previous: Status
    evidence: tuple[Evidence, ...]
    checked_at: float
    alert: str | None = None  # the alert kind queued by this check, if any
    queued: int = 0  # outbox rows written

    @property
    def changed(self) -> bool:
        return self.status != self.previous


class MonitorService:
    def __init__(
        self,
        store: Store,
        platforms: Mapping[str, Platform],
        settings: MonitorSettings | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        alternative: Callable[[str], str | None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.platforms = dict(platforms)
        self.settings = s = settings or MonitorSettings()
        self.clock: Clock = clock or time.time
        self.fetcher = Fetcher(s, http_client, clock=self.clock)
        self.checker = Checker(self.fetcher)
        self.thresholds = Thresholds(failure=s.failure_threshold, success=s.success_threshold)
        self.reports = Reports(s)
        self.alternative = alternative  # platform id -> "Kaggle" (best alternative), for alerts
        self.rng = rng or random.Random()
        self._inflight: dict[str, asyncio.Task[dict[str, Verdict]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._alerts_ready: asyncio.Event | None = None
        self._swept: asyncio.Condition | None = None
        self.sweeps = 0
        self._offline_seen: bool | None = None

    # -- platforms -------------------------------------------------------------------------
    @property
    def monitored(self) -> list[str]:
        return [pid for pid, p in self.platforms.items() if p.alive and p.status_sources]

    def resolve(self, name: str) -> str:
        """A platform id from an id, name or alias; :class:`UnknownPlatform` with suggestions."""
        key = name.strip().lower()
        for pid, p in self.platforms.items():
            if key in (pid, p.name.lower(), *p.aliases):
                return pid
        words = {pid: pid for pid in self.platforms}
        for pid, p in self.platforms.items():
            words[p.name.lower()] = pid
            words.update({a: pid for a in p.aliases})
        close = difflib.get_close_matches(key, list(words), n=3, cutoff=0.6)
        raise UnknownPlatform(name, list(dict.fromkeys(words[c] for c in close)))

    def _ids(self, platforms: Iterable[str]) -> list[str]:
        out = list(platforms)
        for pid in out:
            self._platform(pid)
        return out

    def _platform(self, pid: str) -> Platform:
        try:
            return self.platforms[pid]
        except KeyError:
            raise UnknownPlatform(
                pid, difflib.get_close_matches(pid, list(self.platforms))
            ) from None

    # -- checks ----------------------------------------------------------------------------
    async def check(self, platform_id: str) -> Verdict:
        """Run the platform's sources now and update verdict, history and alerts."""
        return (await self.sweep([platform_id]))[platform_id]

    async def sweep(self, ids: Iterable[str] | None = None) -> dict[str, Verdict]:
        """Check several platforms at once (default: every monitored one).

        Platforms already being checked (by a concurrent caller) are not checked twice: the
        caller shares that check's result.
        """
        tasks = self._start(list(ids) if ids is not None else self.monitored)
        out: dict[str, Verdict] = {}
        for part in await asyncio.gather(*(asyncio.shield(t) for t in tasks)):
            out.update(part)
        return out

    def _start(self, ids: Sequence[str]) -> list[asyncio.Task[dict[str, Verdict]]]:
        """The checks in flight for ``ids``, starting one sweep for those not in flight."""
        for pid in ids:
            self._platform(pid)
        tasks = list(dict.fromkeys(self._inflight[p] for p in ids if p in self._inflight))
        rest = [p for p in dict.fromkeys(ids) if p not in self._inflight]
        if rest:
            task = asyncio.ensure_future(self._run(rest))
            for pid in rest:
                self._inflight[pid] = task
            task.add_done_callback(lambda t: self._done(rest, t))
            tasks.append(task)
        return tasks

    def _done(self, ids: Sequence[str], task: asyncio.Task[dict[str, Verdict]]) -> None:
        for pid in ids:
            if self._inflight.get(pid) is task:
                del self._inflight[pid]
        if not task.cancelled() and task.exception() is not None:
            log.error("monitor check of %s failed", ", ".join(ids), exc_info=task.exception())

    async def _run(self, ids: Sequence[str]) -> dict[str, Verdict]:
        results = await asyncio.gather(
            *(self.checker.check_many(self.platforms[pid].status_sources) for pid in ids)
        )
        by = dict(zip(ids, results, strict=True))
        control: bool | None = None
        if any(e.network_failure for evs in by.values() for e in evs):
            control = await self.fetcher.reachable()
        offline = is_offline(by, control, min_platforms=self.settings.guard_min_platforms)
        if offline != self._offline_seen:  # log the change, not every check while it lasts
            if offline:
                log.warning("every probe failed and no control URL answered: this bot is offline")
            elif self._offline_seen:
                log.info("probes answer again: this bot is back online")
            self._offline_seen = offline
        out = self._apply(by, offline, reached=control is True)
        self.sweeps += 1
        if self._swept is not None:
            async with self._swept:
                self._swept.notify_all()
        return out

    async def wait_sweeps(self, n: int) -> int:
        """Wait until ``n`` checks or sweeps have finished in this process (no polling)."""
        if self._swept is None:
            self._swept = asyncio.Condition()
        async with self._swept:
            await self._swept.wait_for(lambda: self.sweeps >= n)
        return self.sweeps

    def _apply(
        self, by: Mapping[str, list[Evidence]], offline: bool, *, reached: bool = False
    ) -> dict[str, Verdict]:
        now = self.clock()
        s = self.settings
        out: dict[str, Verdict] = {}
        queued_any = False
        with transaction(self.store) as db:
            answered = reached or any(not e.network_failure for evs in by.values() for e in evs)
            if offline or answered:
                self._set_net(db, offline, now)
            for pid, evidence in by.items():
                if not evidence:  # nothing to check (retired or no sources)
                    out[pid] = Verdict(pid, "unknown", None, False, None, "unknown", (), now)
                    continue
                row = db.execute(
                    "SELECT state FROM monitor_state WHERE platform = ?", [pid]
                ).fetchone()
                before = MachineState.from_dict(loads(row[0], {})) if row else MachineState()
                state = step(before, observe(evidence, now, offline=offline), self.thresholds)
                latency = _latency(evidence)
                db.execute(
                    "INSERT INTO monitor_state (platform, status, state, evidence, checked_at, "
                    "latency_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform) DO UPDATE SET "
                    "status = excluded.status, state = excluded.state, "
                    "evidence = excluded.evidence, checked_at = excluded.checked_at, "
                    "latency_ms = excluded.latency_ms",
                    [
                        pid,
                        state.shown,
                        dumps(state.to_dict()),
                        dumps([e.to_dict() for e in evidence]),
                        now,
                        latency,
                    ],
                )
                history.record(db, pid, now, state.shown, latency)
                kind, queued = None, 0
                if not offline:
                    self._incident(db, pid, state, evidence, now)
                    kind, queued = self._alert(db, pid, state, evidence, now)
                    queued_any |= queued > 0
                out[pid] = Verdict(
                    platform_id=pid,
                    status=state.shown,
                    confidence=state.confidence,
                    offline=offline,
                    pending=state.pending,
                    previous=before.shown,
                    evidence=tuple(evidence),
                    checked_at=now,
                    alert=kind,
                    queued=queued,
                )
            self._maybe_prune(db, now, s)
        if queued_any and self._alerts_ready is not None:
            self._alerts_ready.set()
        return out

    @staticmethod
    def _set_net(db: Database, offline: bool, now: float) -> None:
        db.execute(
            "INSERT INTO monitor_net (id, offline, since, checked_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET since = CASE WHEN monitor_net.offline = "
            "excluded.offline THEN monitor_net.since ELSE excluded.since END, "
            "offline = excluded.offline, checked_at = excluded.checked_at",
            [int(offline), now, now],
        )

    def _incident(
        self, db: Database, pid: str, state: MachineState, evidence: Sequence[Evidence], now: float
    ) -> None:
        bad = [e for e in evidence if e.signal in ("degraded", "down", "maintenance")]
        official = [e for e in bad if e.statement]
        top = (official or bad or [None])[0]
        history.track_incident(
            db,
            pid,
            state.status,
            now,
            since=state.since,
            title=(top.incident_title or top.line) if top else state.status,
            url=top.incident_url if top else None,
            official=state.by_official,
        )

    def _alert(
        self, db: Database, pid: str, state: MachineState, evidence: Sequence[Evidence], now: float
    ) -> tuple[str | None, int]:
        before = alerts.load_state(db, pid)
        after, event = alerts.decide(before, state.status, now, self.settings, since=state.since)
        if after != before:
            alerts.save_state(db, pid, after)
        if event is None:
            return None, 0
        order = {"down": 0, "maintenance": 1, "degraded": 2}
        lines = [
            e.line
            for e in sorted(evidence, key=lambda e: (not e.statement, order.get(e.signal, 3)))
            if e.signal in order
        ]
        alt = None
        if self.alternative is not None and event.kind != "recovered":
            try:
                alt = self.alternative(pid)
            except Exception:  # a ranking bug must not lose the alert
                log.exception("alternative for %s failed", pid)
        text = alerts.render(event, self.platforms[pid].name, lines, alt)
        return event.kind, alerts.enqueue(db, pid, event, text, lines)

    def _maybe_prune(self, db: Database, now: float, s: MonitorSettings) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'monitor.pruned_at'").fetchone()
        if row and now - float(row[0]) < s.prune_every_s:
            return
        self.prune(now)

    def prune(self, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        s = self.settings
        with transaction(self.store) as db:
            n = history.prune(db, now, s)
            n += self.reports.prune(db, now)
            n += alerts.prune_outbox(db, now, s.outbox_retention_days)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('monitor.pruned_at', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(now)],
            )
        return n

    # -- reading ---------------------------------------------------------------------------
    def _views(self, ids: Sequence[str]) -> list[VerdictView]:
        s = self.settings
        with self.store.lock:
            return load_views(
                self.store.db,
                self.platforms,
                ids,
                self.clock(),
                reports=self.reports,
                stale_after={pid: s.stale_after(pid) for pid in ids},
                threshold=s.failure_threshold,
            )

    def verdict(self, platform_id: str) -> VerdictView:
        """The stored verdict (no network): evidence with ages, uptime, last incident, staleness."""
        self._platform(platform_id)
        return self._views([platform_id])[0]

    def current_statuses(self) -> dict[str, Status]:
        """``{platform id: status as shown}`` in one query (for ranking alternatives)."""
        with self.store.lock:
            db = self.store.db
            net = db.execute("SELECT offline FROM monitor_net WHERE id = 1").fetchone()
            rows = db.execute("SELECT platform, status FROM monitor_state").fetchall()
        offline = bool(net and net[0])
        stored: dict[str, Status] = dict(rows)
        return {
            pid: stored.get(pid, "unknown") if p.alive and not offline else "unknown"
            for pid, p in self.platforms.items()
        }

    def all_verdicts(self, *, include_retired: bool = False) -> list[VerdictView]:
        ids = [pid for pid, p in self.platforms.items() if include_retired or p.alive]
        return self._views(ids)

    async def status(
        self, platform_id: str, *, refresh: bool = True, wait_s: float | Default | None = DEFAULT
    ) -> VerdictView:
        """The verdict, checked on the spot first when the stored one is stale.

        Waits at most ``wait_s`` (default ``settings.answer_wait_s``; None = as long as it
        takes) for that check; past it, answers from the store (marked stale, with its age)
        while the check goes on and updates the store.
        """
        view = self.verdict(platform_id)
        if refresh and view.stale and view.monitored:
            await self._wait(self._start([platform_id]), wait_s)
            view = self._mark_checking([self.verdict(platform_id)])[0]
        return view

    async def status_all(
        self, *, refresh: bool = True, wait_s: float | Default | None = DEFAULT
    ) -> list[VerdictView]:
        """Every alive platform; stale ones are checked together first (bounded by wait_s)."""
        if refresh:
            stale = [v.platform_id for v in self.all_verdicts() if v.stale and v.monitored]
            if stale:
                await self._wait(self._start(stale), wait_s)
        return self._mark_checking(self.all_verdicts())

    def _mark_checking(self, views: list[VerdictView]) -> list[VerdictView]:
        return [replace(v, checking=True) if v.platform_id in self._inflight else v for v in views]

    async def _wait(self, tasks: Sequence[asyncio.Task[Any]], wait_s: object) -> None:
        """Wait for checks at most ``wait_s``; they go on (and update the store) past it."""
        limit = self.settings.answer_wait_s if wait_s is DEFAULT else wait_s
        await asyncio.wait(tasks, timeout=limit)  # type: ignore[arg-type]

    def series(self, platform_id: str, span: str = "24h") -> list[history.Point]:
        self._platform(platform_id)
        with self.store.lock:
            return history.series(self.store.db, platform_id, self.clock(), span)

    def chart_png(self, platform_id: str, span: str = "24h") -> bytes:
        from bot.monitor.chart import render_png

        points = self.series(platform_id, span)
        name = self.platforms[platform_id].name
        label = history.span_label(span)
        return render_png(points, title=f"{name} — {label}", now=self.clock(), span=span)

    async def chart(self, platform_id: str, span: str = "24h") -> bytes:
        points = self.series(platform_id, span)  # read on the loop thread, draw off it
        from bot.monitor.chart import render_png

        name = self.platforms[platform_id].name
        label = history.span_label(span)
        return await asyncio.to_thread(
            render_png, points, title=f"{name} — {label}", now=self.clock(), span=span
        )

    # -- community reports -----------------------------------------------------------------
    def add_report(
        self,
        platform_id: str,
        *,
        adapter: str,
        chat_id: str | int,
        user_id: str | int,
        text: str = "",
        counts: bool = True,
    ) -> ReportOutcome:
        """Record a report. ``counts=False`` for a known non-outage message (caller decides)."""
        self._platform(platform_id)
        with transaction(self.store) as db:
            return self.reports.add(
                db,
                platform=platform_id,
                user_key=f"{adapter}:{user_id}",
                chat_key=f"{adapter}:{chat_id}",
                now=self.clock(),
                counts=counts,
                text=text,
            )

    # -- subscriptions and the outbound queue ----------------------------------------------
    def subscribe(
        self, adapter: str, chat_id: str | int, platforms: Iterable[str] | None = None
    ) -> alerts.Subscription:
        """Subscribe a chat to some platforms (``None`` = all, including future ones)."""
        ids = None if platforms is None else self._ids(platforms)
        with transaction(self.store) as db:
            return alerts.subscribe(db, adapter, str(chat_id), ids, self.clock())

    def unsubscribe(
        self, adapter: str, chat_id: str | int, platforms: Iterable[str] | None = None
    ) -> alerts.Subscription:
        ids = None if platforms is None else self._ids(platforms)
        with transaction(self.store) as db:
            return alerts.unsubscribe(db, adapter, str(chat_id), ids, self.monitored, self.clock())

    def subscriptions(self, adapter: str, chat_id: str | int) -> alerts.Subscription:
        with self.store.lock:
            return alerts.subscription(self.store.db, adapter, str(chat_id))

    def pending(self, adapter: str, limit: int = 50) -> list[alerts.OutboundAlert]:
        """Queued alerts for one adapter, oldest first."""
        with self.store.lock:
            return alerts.pending(self.store.db, adapter, limit)

    def mark_sent(self, alert_id: int) -> bool:
        with transaction(self.store) as db:
            return alerts.mark_sent(db, alert_id, self.clock())

    def mark_failed(self, alert_id: int, error: str) -> None:
        with transaction(self.store) as db:
            alerts.mark_failed(db, alert_id, error, self.clock())

    def chat_moved(self, adapter: str, old_chat_id: str | int, new_chat_id: str | int) -> int:
        """A chat changed its id: move its subscriptions and pending alerts."""
        with transaction(self.store) as db:
            return alerts.move_chat(db, adapter, str(old_chat_id), str(new_chat_id))

    def chat_gone(self, adapter: str, chat_id: str | int, error: str) -> int:
        """A chat was deleted or forbids the bot: drop its subscriptions and pending alerts."""
        with transaction(self.store) as db:
            alerts.unsubscribe(db, adapter, str(chat_id), None, self.monitored, self.clock())
            return alerts.give_up_chat(db, adapter, str(chat_id), error, self.clock())

    async def alert_stream(
        self, adapter: str, *, poll_s: float = 5.0
    ) -> AsyncIterator[alerts.OutboundAlert]:
        """Yield queued alerts forever (woken at once in-process, polled for other processes).

        The consumer calls :meth:`mark_sent` (or :meth:`mark_failed`) after delivering each;
        an alert not marked is yielded again on the next pass.
        """
        if self._alerts_ready is None:
            self._alerts_ready = asyncio.Event()
        ready = self._alerts_ready
        while True:
            ready.clear()
            batch = self.pending(adapter)
            for a in batch:
                yield a
            if batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), timeout=poll_s)

    # -- background loop -------------------------------------------------------------------
    async def start(self) -> None:
        if self._alerts_ready is None:
            self._alerts_ready = asyncio.Event()
        if self.settings.background and (self._task is None or self._task.done()):
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._loop(), name="nbhelp-monitor")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for t in list(self._inflight.values()):
            t.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self.fetcher.aclose()

    def _jitter(self, pid: str) -> float:
        j = min(self.settings.jitter_s, self.settings.interval_for(pid) / 2)
        return self.rng.uniform(-j, j) if j > 0 else 0.0

    def _checked_at(self) -> dict[str, float]:
        with self.store.lock:
            rows = self.store.db.execute("SELECT platform, checked_at FROM monitor_state")
            return {r[0]: r[1] for r in rows.fetchall() if r[1] is not None}

    async def _loop(self) -> None:
        s = self.settings
        now = self.clock()
        last = self._checked_at()
        due = {
            pid: (last[pid] + s.interval_for(pid) if pid in last else now) + abs(self._jitter(pid))
            for pid in self.monitored
        }
        while due:
            now = self.clock()
            ready = [pid for pid, t in due.items() if t <= now]
            if ready:
                last = self._checked_at()  # another process (probe, ask) may have checked
                todo = [p for p in ready if now - last.get(p, -1e18) >= s.interval_for(p) / 2]
                try:
                    if todo:
                        await self.sweep(todo)
                except Exception:
                    log.exception("monitor sweep failed")
                for pid in ready:
                    due[pid] = self.clock() + s.interval_for(pid) + self._jitter(pid)
                continue
            delay = min(max(min(due.values()) - now, 0.01), 60.0)
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()


def _latency(evidence: Sequence[Evidence]) -> float | None:
    """The platform's response time: the median of its own probes that got an answer."""
    vals = [
        e.latency_ms
        for e in evidence
        if e.is_probe and e.latency_ms is not None and not e.network_failure
    ]
    return round(statistics.median(vals), 1) if vals else None
