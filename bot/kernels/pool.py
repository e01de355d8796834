"""The warm pool: kernels started ahead of time so a new session does not pay a cold start.

A spare is only ever handed to one session and never returns to the pool: kernels are not
reused between users, so nothing one user did can be seen by the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from bot.kernels.backend import KernelBackend, KernelHandle
from bot.kernels.errors import KernelError, KernelStartError, ServiceClosed
from bot.kernels.scheduler import OnQueued, _notify

log = logging.getLogger(__name__)


class WarmPool:
    def __init__(self, backend: KernelBackend, size: int) -> None:
        self.backend = backend
        self.size = size
        self._ready: deque[KernelHandle] = deque()
        self._waiters: deque[asyncio.Future[KernelHandle]] = deque()
        self._starting = 0
        self._failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def ready_count(self) -> int:
        return sum(1 for k in self._ready if k.alive)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def fill(self) -> None:
        """Start kernels until spares + starting cover the pool size and every waiter."""
        if self._closed:
            return
        self._drop_dead()
        wanted = self.size + len(self._waiters)
        while len(self._ready) + self._starting < wanted:
            self._starting += 1
            task = asyncio.create_task(self._start_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def take(
        self, on_queued: OnQueued | None = None, owner: str | None = None
    ) -> KernelHandle:
        """A started kernel: a spare at once, else the next one that finishes starting.

        For an ``owner_bound`` backend with no spare ready, a kernel is started for ``owner``
        (so the far side sees whose it is) instead of waiting for an anonymous one."""
        if self._closed:
            raise ServiceClosed()
        self._drop_dead()
        if self._ready:
            return self._ready.popleft()
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

    async def wait_until_ready(self, count: int | None = None) -> None:
        """Until ``count`` (default: the pool size) spares are ready. For benchmarks and tests."""
        target = self.size if count is None else count
        while self.ready_count < target:
            if self._closed:
                raise ServiceClosed()
            self.fill()
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(ServiceClosed())
        while self._ready:
            await self.backend.shutdown(self._ready.popleft())

    def _drop_dead(self) -> None:
        for kernel in [k for k in self._ready if not k.alive]:
            self._ready.remove(kernel)
            task = asyncio.create_task(self.backend.shutdown(kernel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        if self._closed:
            await self.backend.shutdown(kernel)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(kernel)
                self._changed.set()
                return
        self._ready.append(kernel)
        self._changed.set()
