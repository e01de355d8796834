"""The warm pool: kernels started ahead of time so a new session does not pay a cold start.

A spare is only ever handed to one session and never returns to the pool: kernels are not
reused between users, so nothing one user did can be seen by the next.

- ``size`` spares are kept ready (``pool_size``, sized for the machine by ``sizing.py``).
- A **burst** (``BURST_TAKES`` new sessions within ``BURST_WINDOW_S``) raises the target by
  ``surge`` and refills at once, several kernels in parallel (the backend bounds parallel starts
  by the CPU count), instead of one replacement per spare taken after its first run ends.
- A **lean** kernel (``preimports = "lazy"``: pandas and matplotlib deferred) is completed with
  :meth:`KernelBackend.top_up` while it waits as a spare, one at a time and only when the pool is
  quiet (no burst, nobody waiting, nothing starting), so a burst spends its CPU on new kernels.
  ``take`` prefers completed spares, then lean ones; one whose top-up is under way is handed
  over when the top-up ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from bot.kernels.backend import KernelBackend, KernelHandle
from bot.kernels.errors import KernelError, KernelStartError, ServiceClosed
from bot.kernels.scheduler import OnQueued, _notify

log = logging.getLogger(__name__)

BURST_TAKES = 3  # new sessions …
BURST_WINDOW_S = 10.0  # … within this many seconds make a burst, which lasts as long again


class WarmPool:
    def __init__(
        self,
        backend: KernelBackend,
        size: int,
        *,
        surge: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.size = size
        self.surge = surge
        self._clock = clock
        self._ready: deque[KernelHandle] = deque()
        self._waiters: deque[asyncio.Future[KernelHandle]] = deque()
        self._starting = 0
        self._failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._topping: dict[KernelHandle, asyncio.Task[None]] = {}
        self._takes: deque[float] = deque()
        self._burst_until = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._changed = asyncio.Event()
        self.started = 0  # kernels started, for tests and /run --info
        self.topped_up = 0

    @property
    def ready_count(self) -> int:
        return sum(1 for k in self._ready if k.alive)

    @property
    def complete_count(self) -> int:
        """Spares that are ready and complete (not lean, no top-up under way)."""
        return sum(1 for k in self._ready if k.alive and not k.lean and k not in self._topping)

    @property
    def starting(self) -> int:
        return self._starting

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def bursting(self) -> bool:
        """Whether a burst is on: ``BURST_TAKES`` new sessions within ``BURST_WINDOW_S``, until
        ``BURST_WINDOW_S`` after the last of them."""
        return self._clock() < self._burst_until

    @property
    def target(self) -> int:
        """Spares wanted (ready or starting) besides the waiters: ``size``, plus ``surge``
        while a burst lasts."""
        return self.size + (self.surge if self.bursting else 0)

    def fill(self) -> None:
        """Start kernels until spares + starting cover the target and every waiter; complete a
        lean spare when the pool is quiet."""
        if self._closed:
            return
        self._drop_dead()
        wanted = self.target + len(self._waiters)
        while len(self._ready) + self._starting < wanted:
            self._starting += 1
            self._spawn(self._start_one())
        self._maybe_top_up()

    async def take(
        self, on_queued: OnQueued | None = None, owner: str | None = None
    ) -> KernelHandle:
        """A started kernel: a spare at once, else the next one that finishes starting.

        For an ``owner_bound`` backend with no spare ready, a kernel is started for ``owner``
        (so the far side sees whose it is) instead of waiting for an anonymous one."""
        if self._closed:
            raise ServiceClosed()
        self._note_take()
        self._drop_dead()
        while self._ready:
            kernel = self._pick()
            if self.bursting:
                self.fill()  # ahead of demand: the next sessions are coming
            handed = await self._finish_top_up(kernel)
            if handed is not None:
                return handed
        if owner is not None and self.backend.owner_bound:
            return await self.backend.start(owner)
        fut: asyncio.Future[KernelHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.fill()
        await _notify(on_queued, len(self._waiters))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._ready.appendleft(fut.result())  # handed over as we left: keep it
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    async def wait_until_ready(self, count: int | None = None, *, complete: bool = False) -> None:
        """Until ``count`` (default: the pool size) spares are ready (``complete``: and their
        deferred imports done). For benchmarks and tests."""
        target = self.size if count is None else count
        while (self.complete_count if complete else self.ready_count) < target:
            if self._closed:
                raise ServiceClosed()
            self.fill()
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self._tasks, *self._topping.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._topping.values(), return_exceptions=True)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(ServiceClosed())
        while self._ready:
            await self.backend.shutdown(self._ready.popleft())

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _note_take(self) -> None:
        now = self._clock()
        self._takes.append(now)
        while self._takes and self._takes[0] <= now - BURST_WINDOW_S:
            self._takes.popleft()
        if len(self._takes) < BURST_TAKES:
            return
        if not self.bursting:
            log.info("burst of new sessions: keeping %d spares ready", self.size + self.surge)
        self._burst_until = now + BURST_WINDOW_S
        # when the burst is over, complete the lean spares it left (fill() tops up)
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(BURST_WINDOW_S + 0.1, self.fill)

    def _pick(self) -> KernelHandle:
        """The best spare: complete, then lean, then one being completed (removed from ready)."""

        def rank(kernel: KernelHandle) -> int:
            if kernel in self._topping:
                return 2
            return 1 if kernel.lean else 0

        kernel = min(self._ready, key=rank)
        self._ready.remove(kernel)
        return kernel

    async def _finish_top_up(self, kernel: KernelHandle) -> KernelHandle | None:
        """The kernel once its top-up (if one is under way) has ended; None if it died."""
        task = self._topping.get(kernel)
        if task is not None:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if kernel.alive and not self._closed:
                    self._ready.appendleft(kernel)  # the caller left: the spare stays
                raise
        if not kernel.alive:
            self._spawn(self.backend.shutdown(kernel))
            return None
        return kernel

    def _maybe_top_up(self) -> None:
        """Complete one lean spare, when the pool is quiet."""
        if self._closed or self._topping or self._waiters or self._starting or self.bursting:
            return
        kernel = next((k for k in self._ready if k.lean and k.alive), None)
        if kernel is None:
            return
        task = asyncio.create_task(self._top_up(kernel))
        self._topping[kernel] = task

    async def _top_up(self, kernel: KernelHandle) -> None:
        try:
            await self.backend.top_up(kernel)
            if not kernel.lean:
                self.topped_up += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("could not complete spare kernel %s", kernel.id, exc_info=True)
        finally:
            self._topping.pop(kernel, None)
            self._changed.set()
            if not self._closed:
                asyncio.get_running_loop().call_soon(self.fill)  # the next lean spare

    def _drop_dead(self) -> None:
        for kernel in [k for k in self._ready if not k.alive]:
            self._ready.remove(kernel)
            self._spawn(self.backend.shutdown(kernel))

    async def _start_one(self) -> None:
        try:
            kernel = await self.backend.start()
        except asyncio.CancelledError:
            self._starting -= 1
            raise
        except Exception as exc:
            self._starting -= 1
            self._failures += 1
            log.error("could not start a kernel (%d in a row): %s", self._failures, exc)
            error = exc if isinstance(exc, KernelError) else KernelStartError(detail=str(exc))
            if self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_exception(error)
            self._changed.set()
            if self._waiters or self._failures < 3:
                await asyncio.sleep(min(2.0**self._failures, 30.0))  # back off, then try again
                self.fill()
            return
        self._starting -= 1
        self._failures = 0
        self.started += 1
        if self._closed:
            await self.backend.shutdown(kernel)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(kernel)
                self._changed.set()
                self._maybe_top_up()
                return
        self._ready.append(kernel)
        self._changed.set()
        self._maybe_top_up()


__all__ = ["BURST_TAKES", "BURST_WINDOW_S", "WarmPool"]
