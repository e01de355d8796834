"""The monitor service: runs the checks and answers questions about verdicts, history and alerts.

Orchestration only: what is stored lives in :mod:`bot.monitor.storage` (run on the store's
threads, never on the event loop), when platforms are checked in :mod:`bot.monitor.schedule`.
Platform-neutral: it knows platforms (the knowledge base) and a store, nothing about chats
beyond opaque ``(adapter, chat_id)`` keys. State lives in SQLite, so the running bot,
``python -m bot ask`` and ``python -m bot probe`` see the same verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from bot import metrics
from bot.monitor import alerts, history
from bot.monitor.evidence import Evidence
from bot.monitor.fetch import Fetcher
from bot.monitor.reports import ReportOutcome, Reports
from bot.monitor.schedule import Schedule
from bot.monitor.settings import MonitorSettings
from bot.monitor.sources import Checker
from bot.monitor.storage import MonitorStorage, Verdict
from bot.monitor.verdict import Status, is_offline
from bot.monitor.view import VerdictView
from bot.store import Store
from bot.text import did_you_mean
from knowledge.schema import Platform

__all__ = ["DEFAULT", "MonitorService", "UnknownPlatform", "Verdict"]

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
        self.reports = Reports(s)
        self.storage = MonitorStorage(self.platforms, s, self.reports, alternative=alternative)
        self.rng = rng or random.Random()
        self._inflight: dict[str, asyncio.Task[dict[str, Verdict]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._schedule: Schedule | None = None
        self._alerts_ready: asyncio.Event | None = None
        self._swept: asyncio.Condition | None = None
        self.sweeps = 0
        self.last_sweep_at: float | None = None
        self._offline_seen: bool | None = None

    # -- platforms -------------------------------------------------------------------------
    @property
    def monitored(self) -> list[str]:
        return [pid for pid, p in self.platforms.items() if p.alive and p.status_sources]

    def _ids(self, platforms: Iterable[str]) -> list[str]:
        out = list(platforms)
        for pid in out:
            self._platform(pid)
        return out

    def _platform(self, pid: str) -> Platform:
        try:
            return self.platforms[pid]
        except KeyError:
            raise UnknownPlatform(pid, did_you_mean(pid, self.platforms)) from None

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
        by: dict[str, list[Evidence]] = dict(zip(ids, results, strict=True))
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
        now = self.clock()
        out, queued = await self.store.call(
            functools.partial(
                self.storage.apply, by=by, offline=offline, now=now, reached=control is True
            )
        )
        for pid, evidence in by.items():
            for e in evidence:
                if e.is_probe:
                    latency = None if e.latency_ms is None else e.latency_ms / 1000
                    metrics.observe_probe(pid, e.signal, latency)
            if pid in out:
                metrics.set_verdict(pid, out[pid].status)
        if queued and self._alerts_ready is not None:
            self._alerts_ready.set()
        self.sweeps += 1
        self.last_sweep_at = now
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

    async def prune(self, now: float | None = None) -> int:
        at = self.clock() if now is None else now
        return await self.store.call(lambda db: self.storage.prune(db, at))

    # -- reading ---------------------------------------------------------------------------
    async def _views(self, ids: Sequence[str]) -> list[VerdictView]:
        now = self.clock()
        return await self.store.read(lambda db: self.storage.views(db, ids, now))

    async def verdict(self, platform_id: str) -> VerdictView:
        """The stored verdict (no network): evidence with ages, uptime, last incident, staleness."""
        self._platform(platform_id)
        return (await self._views([platform_id]))[0]

    async def current_statuses(self) -> dict[str, Status]:
        """``{platform id: status as shown}`` (for ranking alternatives)."""
        return await self.store.read(self.storage.statuses)

    async def all_verdicts(self, *, include_retired: bool = False) -> list[VerdictView]:
        ids = [pid for pid, p in self.platforms.items() if include_retired or p.alive]
        return await self._views(ids)

    async def status(
        self,
        platform_id: str,
        *,
        patient: bool = False,
        refresh: bool = True,
        wait_s: float | Default | None = DEFAULT,
    ) -> VerdictView:
        """The verdict, checked on the spot first when the stored one is stale.

        Waits at most ``wait_s`` (default ``settings.answer_wait_s``; None or ``patient`` = as
        long as it takes) for that check; past it, answers from the store (marked stale, with
        its age) while the check goes on and updates the store.
        """
        view = await self.verdict(platform_id)
        if refresh and view.stale and view.monitored:
            await self._wait(self._start([platform_id]), None if patient else wait_s)
            view = self._mark_checking([await self.verdict(platform_id)])[0]
        return view

    async def status_all(
        self,
        *,
        patient: bool = False,
        refresh: bool = True,
        wait_s: float | Default | None = DEFAULT,
    ) -> list[VerdictView]:
        """Every alive platform; stale ones are checked together first (bounded by wait_s)."""
        if refresh:
            stale = [v.platform_id for v in await self.all_verdicts() if v.stale and v.monitored]
            if stale:
                await self._wait(self._start(stale), None if patient else wait_s)
        return self._mark_checking(await self.all_verdicts())

    def _mark_checking(self, views: list[VerdictView]) -> list[VerdictView]:
        return [replace(v, checking=True) if v.platform_id in self._inflight else v for v in views]

    async def _wait(
        self, tasks: Sequence[asyncio.Task[Any]], wait_s: float | Default | None
    ) -> None:
        """Wait for checks at most ``wait_s``; they go on (and update the store) past it."""
        limit = self.settings.answer_wait_s if wait_s is DEFAULT else wait_s
        assert not isinstance(limit, Default)
        await asyncio.wait(tasks, timeout=limit)

    async def series(self, platform_id: str, span: str = "24h") -> list[history.Point]:
        self._platform(platform_id)
        now = self.clock()
        return await self.store.read(lambda db: history.series(db, platform_id, now, span))

    async def chart(self, platform_id: str, span: str = "24h") -> bytes | str:
        """A PNG of response time and up/down over ``span`` (drawn off the event loop), or a
        sentence saying why there is not enough data to draw yet."""
        from bot.monitor.chart import render_png, too_little

        points = await self.series(platform_id, span)
        if (why := too_little(points, span, self.clock())) is not None:
            return why
        name = self.platforms[platform_id].name
        label = history.span_label(span)
        return await asyncio.to_thread(
            render_png, points, title=f"{name} — {label}", now=self.clock(), span=span
        )

    # -- community reports -----------------------------------------------------------------
    async def add_report(
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
        now = self.clock()
        return await self.store.call(
            lambda db: self.storage.add_report(
                db,
                platform_id,
                user_key=f"{adapter}:{user_id}",
                chat_key=f"{adapter}:{chat_id}",
                now=now,
                counts=counts,
                text=text,
            )
        )

    # -- subscriptions and the outbound queue ----------------------------------------------
    async def subscribe(
        self, adapter: str, chat_id: str | int, platforms: Iterable[str] | None = None
    ) -> alerts.Subscription:
        """Subscribe a chat to some platforms (``None`` = all, including future ones)."""
        ids = None if platforms is None else self._ids(platforms)
        now = self.clock()
        return await self.store.call(
            lambda db: self.storage.subscribe(db, adapter, str(chat_id), ids, now)
        )

    async def unsubscribe(
        self, adapter: str, chat_id: str | int, platforms: Iterable[str] | None = None
    ) -> alerts.Subscription:
        ids = None if platforms is None else self._ids(platforms)
        now = self.clock()
        return await self.store.call(
            lambda db: self.storage.unsubscribe(db, adapter, str(chat_id), ids, now)
        )

    async def subscriptions(self, adapter: str, chat_id: str | int) -> alerts.Subscription:
        return await self.store.read(lambda db: alerts.subscription(db, adapter, str(chat_id)))

    async def pending(self, adapter: str, limit: int = 50) -> list[alerts.OutboundAlert]:
        """Queued alerts for one adapter, oldest first."""
        return await self.store.call(lambda db: alerts.pending(db, adapter, limit))

    async def mark_sent(self, alert_id: int) -> bool:
        now = self.clock()
        return await self.store.call(lambda db: alerts.mark_sent(db, alert_id, now))

    async def mark_failed(self, alert_id: int, error: str) -> None:
        now = self.clock()
        await self.store.call(lambda db: alerts.mark_failed(db, alert_id, error, now))

    async def chat_moved(self, adapter: str, old_chat_id: str | int, new_chat_id: str | int) -> int:
        """A chat changed its id: move its subscriptions and pending alerts."""
        return await self.store.call(
            lambda db: alerts.move_chat(db, adapter, str(old_chat_id), str(new_chat_id))
        )

    async def chat_gone(self, adapter: str, chat_id: str | int, error: str) -> int:
        """A chat was deleted or forbids the bot: drop its subscriptions and pending alerts."""
        now = self.clock()
        return await self.store.call(
            lambda db: self.storage.chat_gone(db, adapter, str(chat_id), error, now)
        )

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
            batch = await self.pending(adapter)
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
            self._schedule = Schedule(
                self.settings,
                self.monitored,
                sweep=self.sweep,
                checked_at=lambda: self.store.read(self.storage.checked_at),
                clock=self.clock,
                rng=self.rng,
            )
            self._task = asyncio.create_task(self._schedule.run(), name="nbhelp-monitor")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for t in list(self._inflight.values()):
            t.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self.fetcher.aclose()
