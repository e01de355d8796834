"""Requests in, answers into the outbox: what the core does with what adapters record.

:meth:`Intake.accept` writes requests to the inbound record (one transaction; a redelivered
one is ignored) — adapters call it before they acknowledge to their platform. :meth:`begin`
hands a recorded request to a core-owned task and returns at once: quick commands on their
own lane (answered as they arrive, whatever the /run backlog), /run on the kernel service's
fair queues. Each answer is written to the outbox in the same transaction that closes its
request, then queued in the adapter's :class:`~bot.delivery.dispatch.Dispatcher`.

After a crash, a SIGTERM mid-run or any restart, :meth:`open` finds this adapter's requests
that an earlier run did not finish: a quick command, or a /run whose code had not started, is
handled again (at most ``restart_attempts`` times); a /run that was running is told plainly
that the bot restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.core.contract import Outlet
from bot.core.errors import new_error_id
from bot.core.models import Reply, code, para
from bot.delivery import storage
from bot.delivery.codec import dump_reply
from bot.delivery.dispatch import Dispatcher
from bot.delivery.models import Lane, Parcel, QueueView, Request, Ticket, Waiting
from bot.delivery.settings import DeliverySettings
from bot.retry import Backoff
from bot.store import Store

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger("nbhelp.delivery")

RESTARTED_RUNNING = (
    "The bot restarted while your code was running, so it has no result for it. "
    "Please send it again."
)
RESTARTED = "The bot restarted before it could answer this. Please send it again."
WRITE_TRIES = 8


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the core's handler call gets besides the request."""

    is_admin: bool
    notify: Callable[[str], Awaitable[None]]
    on_started: Callable[[], Awaitable[None]]


Handle = Callable[[Request, Hooks], Awaitable[Reply | None]]


class Intake:
    """The core's side of requests and answers (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: DeliverySettings,
        *,
        handle: Handle,
        lane_of: Callable[[Request], Lane],
        needs_admin: Callable[[Request], bool],
        on_gone: Callable[[str, str, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.handle = handle
        self.lane_of = lane_of
        self.needs_admin = needs_admin
        self.on_gone = on_gone
        self.clock = clock
        self.wall = wall
        self.boot = uuid.uuid4().hex  # this run of the bot: rows of other runs are recovered
        self.outlets: dict[str, Outlet] = {}
        self.dispatchers: dict[str, Dispatcher] = {}
        self._tasks: dict[int, tuple[str, asyncio.Task[None]]] = {}
        self._queues: dict[tuple[str, str], dict[int, Waiting]] = {}
        self._quick: asyncio.Semaphore | None = None
        self._spare: set[asyncio.Task[None]] = set()

    # -- requests ----------------------------------------------------------------------------

    async def accept(self, requests: Sequence[Request]) -> list[Ticket]:
        """Record requests durably; tickets for the new ones (a redelivery gets none)."""
        if not requests:
            return []
        rows = [(r, self.lane_of(r)) for r in requests]
        now = self.wall()
        ids = await self.store.call(lambda db: storage.accept(db, rows, self.boot, now))
        return [Ticket(i, r, lane) for i, (r, lane) in zip(ids, rows, strict=True) if i is not None]

    def begin(self, ticket: Ticket) -> None:
        """Handle a recorded request on a core-owned task; returns at once."""
        if ticket.id in self._tasks:
            return
        task = asyncio.create_task(self._work(ticket), name=f"nbhelp-request-{ticket.id}")
        self._tasks[ticket.id] = (ticket.request.platform, task)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def view(self, adapter: str, chat_id: str) -> QueueView | None:
        """The chat's /run queue, in arrival order (None when empty)."""
        queue = self._queues.get((adapter, chat_id))
        if not queue:
            return None
        return QueueView(chat_id, tuple(sorted(queue.values(), key=lambda w: w.request_id)))

    # -- adapters ----------------------------------------------------------------------------

    async def open(self, outlet: Outlet) -> Dispatcher:
        """Start sending through ``outlet``: replies left in the outbox are queued again and
        unfinished requests of earlier runs recovered."""
        name = outlet.name
        dispatcher = Dispatcher(
            outlet,
            self.store,
            self.settings,
            views=lambda chat: self.view(name, chat),
            on_gone=self._gone_of(name),
            clock=self.clock,
            wall=self.wall,
        )
        self.outlets[name] = outlet
        self.dispatchers[name] = dispatcher
        before = self.wall() - self.settings.keep_days * 86_400
        with contextlib.suppress(Exception):
            await self.store.call(lambda db: storage.prune(db, before))
        await dispatcher.load()
        rows = await self.store.call(lambda db: storage.unfinished(db, name, self.boot))
        for row in rows:
            await self._recover(row)
        if rows:
            log.info("%s: %d request(s) from before the restart taken up again", name, len(rows))
        return dispatcher

    def _gone_of(self, name: str) -> Callable[[str, str], Awaitable[None]] | None:
        on_gone = self.on_gone
        if on_gone is None:
            return None

        async def gone(chat_id: str, why: str) -> None:
            await on_gone(name, chat_id, why)

        return gone

    async def close(self, name: str, grace_s: float) -> None:
        """Give this adapter's requests in flight ``grace_s`` to finish and their answers time
        to go out; cancel what is left (recovered at the next start)."""
        started = self.clock()
        tasks = [t for (a, t) in self._tasks.values() if a == name and not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, grace_s))
            late = [t for t in tasks if not t.done()]
            if late:
                log.warning(
                    "%s: %d request(s) still being handled at shutdown: cancelled, taken up "
                    "again at the next start",
                    name,
                    len(late),
                )
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        dispatcher = self.dispatchers.pop(name, None)
        self.outlets.pop(name, None)
        if dispatcher is not None:
            left = grace_s - (self.clock() - started)
            await dispatcher.close(max(left, min(grace_s, 2.0)))

    async def aclose(self) -> None:
        for name in list(self.dispatchers):
            await self.close(name, 0.0)
        tasks = [t for (_, t) in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._spare, return_exceptions=True)

    # -- handling ----------------------------------------------------------------------------

    async def _work(self, ticket: Ticket) -> None:
        req = ticket.request
        key = (req.platform, req.chat_id)
        if ticket.lane == "run":
            queue = self._queues.setdefault(key, {})
            queue[ticket.id] = Waiting(
                ticket.id, req.display_name, False, self.clock(), None, req.route
            )
            self._poke(key)
        try:
            if ticket.lane == "quick":
                if self._quick is None:
                    self._quick = asyncio.Semaphore(self.settings.quick_concurrency)
                async with self._quick:
                    reply = await self._handle(ticket)
            else:
                reply = await self._handle(ticket)
            if reply is None:
                now = self.wall()
                await self._write(lambda db: storage.mark_dropped(db, ticket.id, now))
                return
            await self._answer(ticket, reply)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("error %s answering request %s", new_error_id(), ticket.id)
        finally:
            left = self._queues.get(key)
            if left is not None and left.pop(ticket.id, None) is not None:
                if not left:
                    del self._queues[key]
                self._poke(key)
            entry = self._tasks.get(ticket.id)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._tasks[ticket.id]

    async def _handle(self, ticket: Ticket) -> Reply | None:
        req = ticket.request
        outlet = self.outlets.get(req.platform)
        admin = req.is_admin or req.is_private
        if not admin and outlet is not None and self.needs_admin(req):
            admin = await outlet.is_admin(req)
        hooks = Hooks(admin, self._notifier(ticket), self._starter(ticket))
        if outlet is None:
            return await self.handle(req, hooks)
        async with outlet.working(req):
            return await self.handle(req, hooks)

    def _notifier(self, ticket: Ticket) -> Callable[[str], Awaitable[None]]:
        key = (ticket.request.platform, ticket.request.chat_id)

        async def notify(text: str) -> None:
            entry = self._queues.get(key, {}).get(ticket.id)
            if entry is None:
                return  # quick commands show no progress
            self._queues[key][ticket.id] = replace(entry, note=text)
            self._poke(key)

        return notify

    def _starter(self, ticket: Ticket) -> Callable[[], Awaitable[None]]:
        key = (ticket.request.platform, ticket.request.chat_id)

        async def started() -> None:
            entry = self._queues.get(key, {}).get(ticket.id)
            if entry is not None:
                self._queues[key][ticket.id] = replace(entry, running=True, note=None)
                self._poke(key)
            now = self.wall()
            try:
                await self.store.call(lambda db: storage.mark_started(db, ticket.id, now))
            except Exception:  # the run goes on; after a crash it would be re-run, not told
                log.exception("recording that request %s started failed", ticket.id)

        return started

    def _poke(self, key: tuple[str, str]) -> None:
        dispatcher = self.dispatchers.get(key[0])
        if dispatcher is not None:
            dispatcher.poke(key[1])

    async def _answer(self, ticket: Ticket, reply: Reply) -> None:
        req = ticket.request
        payload = dump_reply(reply)
        now = self.wall()
        oid = await self._write(
            lambda db: storage.answer(
                db,
                adapter=req.platform,
                chat_id=req.chat_id,
                lane=ticket.lane,
                request_id=ticket.id,
                who=req.display_name,
                route=req.route,
                payload=payload,
                now=now,
            )
        )
        dispatcher = self.dispatchers.get(req.platform)
        if dispatcher is not None and oid:
            dispatcher.put(
                Parcel(
                    oid,
                    req.platform,
                    req.chat_id,
                    ticket.lane,
                    reply,
                    req.route,
                    req.display_name,
                    now,
                    ticket.id,
                )
            )

    async def _write(self, fn: Callable[[Database], int | None]) -> int:
        """Run a write, retrying a busy or failing database with backoff."""
        backoff = Backoff(0.2, 5.0)
        for attempt in range(WRITE_TRIES):
            try:
                result = await self.store.call(fn)
                return int(result or 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == WRITE_TRIES - 1:
                    raise
                log.warning("delivery: a database write failed (%s); retrying", exc)
                await backoff.wait()
        return 0

    # -- after a restart ---------------------------------------------------------------------

    async def _recover(self, row: storage.OpenRequest) -> None:
        ticket = Ticket(row.id, row.request, row.lane, row.attempts)
        if row.lane == "run" and row.state == "started":
            reply = Reply.of(para(RESTARTED_RUNNING), tone="warn")
        elif row.attempts > self.settings.restart_attempts:
            command = row.request.text.split(maxsplit=1)[0][:40] if row.request.text else ""
            reply = Reply.of(para(RESTARTED, " (", code(command), ")"), tone="warn")
        else:
            now = self.wall()
            attempts = await self.store.call(lambda db: storage.restart(db, row.id, self.boot, now))
            self.begin(replace(ticket, attempts=attempts))
            return
        await self._answer(ticket, reply)
