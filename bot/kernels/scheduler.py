"""Fair queueing with positions, and a per-user rate limit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from bot.kernels.errors import RateLimited

log = logging.getLogger(__name__)

OnQueued = Callable[[int], Awaitable[None]]


class FairQueue:
    """At most ``capacity`` holders at once; the others wait first come, first served.

    A waiter's ``on_queued`` is awaited with its 1-based position when it starts waiting, and
    called again (in the background) whenever its position improves.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.holders = 0
        self._waiters: deque[tuple[asyncio.Future[None], OnQueued | None]] = deque()
        self._notify_tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def free(self) -> bool:
        return self.holders < self.capacity and not self._waiters

    async def acquire(
        self,
        on_queued: OnQueued | None = None,
        make_room: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Take a place. ``make_room`` may free one (e.g. close an idle session) before waiting."""
        if self.holders >= self.capacity and not self._waiters and make_room is not None:
            await make_room()
        if self.holders < self.capacity and not self._waiters:
            self.holders += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (fut, on_queued)
        self._waiters.append(entry)
        await _notify(on_queued, len(self._waiters))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed the place just as we gave up: pass it on
            else:
                self._remove(entry)
            raise

    def release(self) -> None:
        while self._waiters:
            fut, _ = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the place passes straight to the next waiter
                self._renumber()
                return
        self.holders = max(0, self.holders - 1)

    @asynccontextmanager
    async def slot(self, on_queued: OnQueued | None = None) -> AsyncIterator[None]:
        await self.acquire(on_queued)
        try:
            yield
        finally:
            self.release()

    def _remove(self, entry: tuple[asyncio.Future[None], OnQueued | None]) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            return
        self._renumber()

    def _renumber(self) -> None:
        for position, (_, on_queued) in enumerate(self._waiters, start=1):
            if on_queued is not None:
                task = asyncio.create_task(_notify(on_queued, position))
                self._notify_tasks.add(task)
                task.add_done_callback(self._notify_tasks.discard)


async def _notify(on_queued: OnQueued | None, position: int) -> None:
    if on_queued is None:
        return
    try:
        await on_queued(position)
    except Exception:  # a chat hiccup must not lose the user's place
        log.warning("on_queued callback failed", exc_info=True)


class RateLimiter:
    """At most ``per_minute`` accepted runs per user in any 60-second window."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def check(self, user_key: str) -> None:
        """Record a run for ``user_key`` or raise RateLimited (recording nothing)."""
        now = self._clock()
        events = self._events.setdefault(user_key, deque())
        while events and events[0] <= now - 60.0:
            events.popleft()
        if len(events) >= self.per_minute:
            raise RateLimited(events[0] + 60.0 - now, self.per_minute)
        events.append(now)
        if len(self._events) > 10_000:
            self._prune(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - 60.0]:
            del self._events[key]
