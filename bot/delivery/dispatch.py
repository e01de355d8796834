"""The chat scheduler of one adapter: every reply it sends goes through here.

One task per busy chat acts on :func:`bot.delivery.plan.decide`: it sends the most valuable
replies first within the chat's budget, combines answers when the backlog is larger than the
budget (the adapter's :meth:`~bot.core.contract.Outlet.pack` says how many fit in one
message), keeps the chat's one progress message current, and retries a failed send with
backoff for ``retry_for_s``. A reply of the outbox is marked sent right after the platform
confirmed it, so a restart re-sends at most the one message in flight per chat.

Alerts come through :meth:`Dispatcher.offer` from the monitor's own outbox (which records
their outcome): they take their lane in the chat's order, and a failure is reported to the
caller at once (the alert delivery loop retries them its own way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.core.contract import ChatGone, Outlet
from bot.core.errors import new_error_id
from bot.core.models import Reply
from bot.delivery import storage
from bot.delivery.codec import load_reply
from bot.delivery.models import Batch, Lane, Parcel, QueueView, Undeliverable
from bot.delivery.plan import (
    PROGRESS,
    ChatState,
    Pacer,
    Send,
    ShowProgress,
    decide,
    give_up,
    retry_delay,
)
from bot.delivery.settings import DeliverySettings
from bot.retry import Backoff
from bot.store import Store

log = logging.getLogger("nbhelp.delivery")
MARK_TRIES = 5
PACERS_KEPT = 256  # chats whose recent sends are remembered beyond their queue emptying


class Stopping(Exception):
    """The adapter stopped before this reply could be sent (it stays in its outbox)."""


class Dispatcher:
    """Sends one adapter's replies, chat by chat (see the module docstring)."""

    def __init__(
        self,
        outlet: Outlet,
        store: Store,
        settings: DeliverySettings,
        *,
        views: Callable[[str], QueueView | None] = lambda chat: None,
        on_gone: Callable[[str, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.outlet = outlet
        self.name = outlet.name
        self.store = store
        self.settings = settings
        self.views = views
        self.on_gone = on_gone
        self.clock = clock
        self.wall = wall
        self.closing = False
        self.chats: dict[str, ChatState] = {}
        # each chat's record of what it sent, kept while it matters for the budget (a chat's
        # state goes when its queue empties; its sends still count for the window)
        self.pacers: dict[str, Pacer] = {}
        self.sent = 0  # sends the platform confirmed (messages, not replies)
        self.combined = 0  # sends that carried more than one answer
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- what comes in -----------------------------------------------------------------------

    async def load(self) -> int:
        """Queue the replies an earlier run of the bot left in the outbox."""
        rows = await self.store.call(lambda db: storage.pending(db, self.name))
        for row in rows:
            try:
                reply = load_reply(row.payload)
            except Exception:
                log.exception("outbox row %s cannot be read; giving it up", row.id)
                await self._give_up_row(row.id)
                continue
            self.put(
                Parcel(
                    row.id,
                    self.name,
                    row.chat_id,
                    row.lane,
                    reply,
                    row.route,
                    row.who,
                    row.created_at,
                    row.request_id,
                    row.attempts,
                )
            )
        if rows:
            log.info("%s: %d repl(ies) from before the restart queued again", self.name, len(rows))
        return len(rows)

    async def _give_up_row(self, row_id: int) -> None:
        now = self.wall()
        await self.store.call(lambda db: storage.mark_failed(db, [row_id], "unreadable", now))

    def put(self, parcel: Parcel) -> None:
        """Queue a reply for its chat."""
        self._state(parcel.chat_id).add(parcel)
        self.poke(parcel.chat_id)

    async def offer(self, chat_id: str, reply: Reply, lane: Lane = "alert") -> None:
        """Send a reply held by another outbox (an alert) in its turn; raises what the send
        raised (:class:`ChatGone` for a gone chat)."""
        if self.closing:
            raise Stopping(f"{self.name} is stopping")
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        parcel = Parcel(0, self.name, chat_id, lane, reply, created_at=self.wall(), retry=False)
        parcel.outcome = outcome
        self.put(parcel)
        try:
            await outcome
        except asyncio.CancelledError:  # nobody waits for it any more: do not send it
            st = self.chats.get(chat_id)
            if st is not None:
                st.remove([parcel])
            outcome.cancel()
            raise

    def poke(self, chat_id: str) -> None:
        """Something changed in this chat (a reply, its queue): look at it again."""
        event = self._wake.get(chat_id)
        if event is None:
            event = self._wake[chat_id] = asyncio.Event()
        event.set()
        task = self._tasks.get(chat_id)
        if (task is None or task.done()) and not self.closing:
            self._tasks[chat_id] = asyncio.create_task(
                self._run(chat_id), name=f"nbhelp-deliver-{self.name}-{chat_id}"
            )

    def _state(self, chat_id: str) -> ChatState:
        st = self.chats.get(chat_id)
        if st is None:
            budget = self.outlet.budget(chat_id)
            now = self.clock()
            st = self.chats[chat_id] = ChatState.of(chat_id, budget, self.settings, now)
            kept = self.pacers.get(chat_id)
            if st.pacer is not None and kept is not None and kept.budget_key == st.pacer.budget_key:
                st.pacer = kept
            if st.pacer is not None:
                self.pacers[chat_id] = st.pacer
            if len(self.pacers) > PACERS_KEPT:
                for key in [k for k, p in self.pacers.items() if p.idle(now)]:
                    if key not in self.chats:
                        del self.pacers[key]
        return st

    @property
    def backlog(self) -> int:
        return sum(len(v) for st in self.chats.values() for v in st.lanes.values())

    # -- stopping ----------------------------------------------------------------------------

    async def close(self, grace_s: float) -> None:
        """Send what can go within ``grace_s`` (no new progress, no long retries), then stop.
        Unsent replies stay in the outbox for the next start."""
        self.closing = True
        for chat_id in list(self._tasks):
            self.poke(chat_id)
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, grace_s))
        late = [t for t in self._tasks.values() if not t.done()]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        left = 0
        for st in self.chats.values():
            for parcels in st.lanes.values():
                for p in parcels:
                    left += 1
                    _resolve(p, Stopping(f"{self.name} stopped"))
            if st.held is not None:
                for p in st.held.parcels:
                    left += 1
                    _resolve(p, Stopping(f"{self.name} stopped"))
        if left:
            log.info("%s: %d repl(ies) left for the next start", self.name, left)

    # -- one chat ----------------------------------------------------------------------------

    async def _run(self, chat_id: str) -> None:
        st = self._state(chat_id)
        wake = self._wake[chat_id]
        try:
            while True:
                wake.clear()
                view = self.views(chat_id)
                decision = decide(st, view, self.clock(), self.settings, closing=self.closing)
                if isinstance(decision, Send):
                    await self._send(st, decision)
                elif isinstance(decision, ShowProgress):
                    await self._progress(st, view, decision.clear)
                elif decision.seconds is None:
                    idle = st.empty and not st.progress_shown and not (view and view.entries)
                    if self.closing or idle:
                        return
                    await wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), decision.seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not silence the chat for good
            log.exception(
                "error %s in the %s scheduler of chat %s", new_error_id(), self.name, chat_id
            )
        finally:
            if self._tasks.get(chat_id) is asyncio.current_task():
                del self._tasks[chat_id]
            if st.empty and not st.progress_shown and self.chats.get(chat_id) is st:
                del self.chats[chat_id]
                self._wake.pop(chat_id, None)
            elif not self.closing and not st.empty:
                self.poke(chat_id)  # ended by an error: go on in a fresh task

    async def _send(self, st: ChatState, d: Send) -> None:
        if d.batch is not None:
            batch = d.batch
            st.held = None
        else:
            k = 1
            if d.limit > 1:
                k = max(1, min(d.limit, self.outlet.pack(st.chat_id, d.parcels, d.limit)))
            batch = Batch(list(d.parcels[:k]))
            st.remove(batch.parcels)
        try:
            cost = await self.outlet.deliver(st.chat_id, batch)
        except asyncio.CancelledError:
            st.held = st.held or batch  # still pending (in the outbox too)
            raise
        except ChatGone as exc:
            await self._chat_gone(st, batch, exc)
            return
        except Undeliverable as exc:
            log.warning("%s refused a reply in chat %s for good: %s", self.name, st.chat_id, exc)
            await self._finish(batch.parcels, error=f"refused: {exc}", exc=exc)
            return
        except Exception as exc:
            await self._failed(st, batch, exc)
            return
        if st.pacer is not None:
            st.pacer.take(self.clock(), max(1, cost), batch.parcels[0].lane)
        self.sent += max(1, cost)
        if len(batch.parcels) > 1:
            self.combined += 1
        await self._finish(batch.parcels)

    async def _failed(self, st: ChatState, batch: Batch, exc: Exception) -> None:
        error_id = new_error_id()
        keep: list[Parcel] = []
        for p in batch.parcels:
            p.attempts += 1
            if not p.retry:
                _resolve(p, exc)
                continue
            keep.append(p)
        delay = retry_delay(max((p.attempts for p in keep), default=1), self.settings)
        now = self.wall()
        gone = [p for p in keep if give_up(p, now, delay, self.settings)]
        keep = [p for p in keep if p not in gone]
        if gone:
            log.error(
                "error %s: %d repl(ies) to %s chat %s given up after %.0f s of failed sends "
                "(last: %s)",
                error_id,
                len(gone),
                self.name,
                st.chat_id,
                self.settings.retry_for_s,
                _one_line(exc),
            )
            await self._finish(gone, error=f"{error_id}: {exc}")
        if keep:
            log.warning(
                "error %s: sending %d repl(ies) to %s chat %s failed (%s); retrying in %.1f s",
                error_id,
                len(keep),
                self.name,
                st.chat_id,
                _one_line(exc),
                delay,
            )
            same = len(keep) == len(batch.parcels)
            st.held = Batch(keep, batch.steps if same else set(), batch.memo if same else {})
            st.held_at = self.clock() + delay
            ids = [p.id for p in keep if p.id]
            if ids:
                await self._note(ids, f"{error_id}: {exc}")

    async def _chat_gone(self, st: ChatState, batch: Batch, exc: ChatGone) -> None:
        parcels = list(batch.parcels)
        for lane_parcels in st.lanes.values():
            parcels += lane_parcels
            lane_parcels.clear()
        if st.held is not None:
            parcels += st.held.parcels
            st.held = None
        log.warning(
            "%s chat %s is gone (%s): %d repl(ies) dropped",
            self.name,
            st.chat_id,
            exc,
            len(parcels),
        )
        await self._finish(parcels, error=f"chat gone: {exc}", exc=exc)
        if self.on_gone is not None and any(p.retry for p in batch.parcels):
            try:
                await self.on_gone(st.chat_id, str(exc) or "chat gone")
            except Exception:
                log.exception(
                    "telling the services that %s chat %s is gone failed", self.name, st.chat_id
                )

    async def _progress(self, st: ChatState, view: QueueView | None, clear: bool) -> None:
        shown = QueueView(st.chat_id) if clear or view is None else view
        cost = 0
        try:
            cost = await self.outlet.show_progress(st.chat_id, shown)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("%s: progress in chat %s not shown: %s", self.name, st.chat_id, _one_line(exc))
        now = self.clock()
        st.progress_at = now
        st.progress_shown = not clear and bool(shown.entries)
        st.progress_sig = shown.signature() if st.progress_shown else None
        if st.pacer is not None and cost:
            st.pacer.take(now, cost, PROGRESS)

    # -- outcomes ----------------------------------------------------------------------------

    async def _finish(
        self, parcels: list[Parcel], *, error: str | None = None, exc: BaseException | None = None
    ) -> None:
        ids = [p.id for p in parcels if p.id]
        if ids:
            now = self.wall()
            if error is None:
                await self._write(lambda db: storage.mark_sent(db, ids, now))
            else:
                await self._write(lambda db: storage.mark_failed(db, ids, error, now))
        for p in parcels:
            _resolve(p, exc if exc is not None else (Undeliverable(error) if error else None))

    async def _note(self, ids: list[int], error: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.call(lambda db: storage.note_attempt(db, ids, error))

    async def _write(self, fn: Callable[..., object]) -> None:
        backoff = Backoff(0.2, 5.0)
        for attempt in range(MARK_TRIES):
            try:
                await self.store.call(fn)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == MARK_TRIES - 1:
                    log.error("%s: recording a send failed for good: %s", self.name, exc)
                    return
                await backoff.wait()


def _resolve(parcel: Parcel, exc: BaseException | None) -> None:
    fut = parcel.outcome
    if fut is None or fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
