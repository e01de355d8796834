"""KernelService: per-user notebook sessions on pooled, sandboxed kernels.

The flow of one ``run``:

1. refuse at once when the sandbox is unavailable, the user already has a job, or the user is
   over the rate limit;
2. find the session's kernel, or make a session: take a place among ``max_sessions`` (closing
   the least recently used idle session if the bot is full, else queueing), then a warm spare
   from the pool (or wait for one to start);
3. take one of ``max_running`` execution slots (queueing beyond them);
4. execute under the limits: wall time → message-mode interrupt → after the grace period,
   kill and replace; output cap → stop capturing, interrupt, recycle;
5. classify what happened, recycle the kernel after any hard limit (memory, processes, disk,
   output flood, crash, timeout kill) and tell the user in short notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import platform
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.kernels.backend import ExecOutcome, ExecReply, KernelBackend, KernelHandle, KernelUsage
from bot.kernels.collector import Collector
from bot.kernels.errors import (
    Busy,
    NoGpuBackend,
    SandboxUnavailable,
    ServiceClosed,
)
from bot.kernels.fence import strays_notice
from bot.kernels.fence_settings import FenceSettings
from bot.kernels.jupyter import FLOOD
from bot.kernels.local import LocalBackend
from bot.kernels.models import ErrorOutput, KernelInfo, KernelLimits, RunResult, RunStatus
from bot.kernels.pool import WarmPool
from bot.kernels.scheduler import FairQueue, OnQueued, RateLimiter
from bot.kernels.sizing import Machine, PoolPlan, pool_plan
from bot.kernels.verdict import image_notices, verdict
from bot.text import duration

log = logging.getLogger(__name__)

MAX_CODE_CHARS = 100_000
GONE_NOTICE = "Your session ended on the server; variables are gone. This is a fresh one."
ENDED_MEMORY = 2000
PACKAGES = ("numpy", "pandas", "matplotlib")


class _KernelGone(Exception):
    """The session's remote kernel was gone (culled) before the code started."""


@dataclass(eq=False)
class _Session:
    key: str
    kernel: KernelHandle
    created: float
    last_used: float
    owner: str = ""  # the person (platform:user), whatever the chat
    busy: bool = False
    ended: bool = False
    cancel_reason: str | None = None


class KernelService:
    def __init__(
        self,
        limits: KernelLimits,
        *,
        backend: KernelBackend | None = None,
        allow_unsandboxed: bool = False,
        run_dir: Path | None = None,
        protected_paths: Sequence[Path] = (),
        fence: FenceSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        machine: Machine | None = None,
    ) -> None:
        self.limits = limits
        self.pool_plan: PoolPlan = pool_plan(limits, machine)
        self._backend = backend or LocalBackend(
            limits, run_dir=run_dir, protected_paths=protected_paths, fence=fence
        )
        self._allow_unsandboxed = allow_unsandboxed
        self._clock = clock
        self._pool = self._new_pool(self._backend)
        self._capacity = FairQueue(self.pool_plan.sessions)
        self._slots = FairQueue(limits.max_running)
        self._rate = RateLimiter(limits.runs_per_minute, clock=clock)
        self._sessions: dict[str, _Session] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._busy_users: set[str] = set()
        self._key_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._started = False
        self._closed = False
        self._unavailable: SandboxUnavailable | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._start_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the sandbox (recording why it is unavailable) and fill the pool in the background."""
        async with self._start_lock:
            if self._started:
                return
            try:
                await self._backend.check()
            except SandboxUnavailable as exc:
                fallback = self._backend.unsandboxed() if self._allow_unsandboxed else None
                if fallback is None:
                    self._unavailable = exc
                    log.error("/run is disabled: %s", exc)
                    self._started = True
                    return
                log.warning(
                    "RUNNING USER CODE WITHOUT A SANDBOX (allow_unsandboxed is set): %s. "
                    "Anyone who can use /run can read this machine's files and environment.",
                    exc,
                )
                await self._backend.aclose()
                self._backend = fallback
                self._pool = self._new_pool(fallback)
                await fallback.check()
            plan = self.pool_plan
            log.info(
                "kernels: up to %d sessions; warm pool of %d spares, %d more in a burst of new "
                "sessions (%s)",
                plan.sessions,
                plan.size,
                plan.surge,
                plan.reason,
            )
            self._pool.fill()
            self._reaper = asyncio.create_task(self._reap_loop())
            self._started = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*self._background, return_exceptions=True)
        for session in list(self._sessions.values()):
            session.cancel_reason = "closed"
            await self._end_session(session)
        await self._pool.aclose()
        await self._backend.aclose()

    @property
    def backend(self) -> KernelBackend:
        return self._backend

    def kill_now(self) -> int:
        """The last resort when :meth:`aclose` ran out of time: kill every kernel now."""
        self._closed = True
        return self._backend.kill_now()

    async def wait_until_warm(self, count: int | None = None, *, complete: bool = False) -> None:
        """Until ``count`` (default: the pool's size) warm kernels are ready (``complete``: with
        their deferred imports done too)."""
        await self.start()
        self._check_available()
        await self._pool.wait_until_ready(count, complete=complete)

    def _new_pool(self, backend: KernelBackend) -> WarmPool:
        plan = self.pool_plan
        return WarmPool(backend, plan.size, surge=plan.surge, clock=self._clock)

    @property
    def available(self) -> bool:
        return self._started and self._unavailable is None and not self._closed

    @property
    def unavailable_reason(self) -> str | None:
        if self._closed:
            return "the kernel service is shut down"
        if self._unavailable is not None:
            return str(self._unavailable)
        if not self._started:
            return "the kernel service has not been started"
        return None

    def info(self) -> KernelInfo:
        return KernelInfo(
            backend=self._backend.name,
            sandboxed=self._backend.sandboxed,
            gpu=self._backend.gpu,
            limits=self.limits,
            available=self.available,
            unavailable_reason=self.unavailable_reason,
            python=platform.python_version(),
            packages=_package_versions(),
            warm_kernels=self._pool.ready_count,
            sessions=len(self._sessions),
            running=self._slots.holders,
            queued=self._slots.waiting + self._capacity.waiting + self._pool.waiting,
            fences=self._backend.fences() if self.available else (),
        )

    # -- commands ----------------------------------------------------------------------------

    async def run(
        self,
        session_key: str,
        user_key: str,
        code: str,
        *,
        on_queued: Callable[[int], Awaitable[None]] | None = None,
        on_started: Callable[[], Awaitable[None]] | None = None,
        gpu: bool = False,
    ) -> RunResult:
        """Run ``code`` in the session's kernel. Raises KernelError subclasses (with a
        ``user_message``) when the run is refused; every run that starts returns a RunResult.
        ``on_started`` is awaited once the run holds its slot, just before the code starts."""
        await self.start()
        self._check_available()
        if gpu and self._backend.gpu is None:
            raise NoGpuBackend()
        if user_key in self._busy_users:
            raise Busy()
        self._rate.check(user_key)
        self._busy_users.add(user_key)
        try:
            async with self._key_lock(session_key):
                return await self._run(session_key, user_key, code, on_queued, on_started)
        finally:
            self._busy_users.discard(user_key)

    async def reset(self, session_key: str) -> bool:
        """End the session (killing its kernel, even mid-run). True if there was one."""
        self._ended.pop(session_key, None)
        session = self._sessions.get(session_key)
        if session is None:
            return False
        session.cancel_reason = "reset"
        await self._end_session(session)
        return True

    async def expire_sessions(self) -> int:
        """End idle, too old or dead sessions now (the reaper does this periodically)."""
        count = 0
        for session in list(self._sessions.values()):
            if session.busy:
                continue
            notice = self._expiry_notice(session)
            if notice is not None:
                await self._end_session(session, notice)
                count += 1
        self._pool.fill()
        return count

    # -- internals ---------------------------------------------------------------------------

    def _check_available(self) -> None:
        if self._closed:
            raise ServiceClosed()
        if self._unavailable is not None:
            raise SandboxUnavailable(self._unavailable.user_message, detail=str(self._unavailable))

    @asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        entry = self._key_locks.get(key)
        if entry is None:
            entry = self._key_locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._key_locks[key]

    async def _run(
        self,
        key: str,
        owner: str,
        code: str,
        on_queued: OnQueued | None,
        on_started: Callable[[], Awaitable[None]] | None = None,
    ) -> RunResult:
        if len(code) > MAX_CODE_CHARS:
            notice = f"Your code is too long (over {MAX_CODE_CHARS:,} characters)."
            return RunResult((), RunStatus.ERROR, notices=(notice,))
        code = code.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from chat
        for attempt in range(2):
            session, notices, fresh = await self._session_for(key, owner, on_queued)
            session.busy = True
            try:
                async with self._slots.slot(on_queued):
                    if on_started is not None and attempt == 0:
                        await on_started()
                    return await self._execute(session, code, notices, may_retry=attempt == 0)
            except _KernelGone:
                pass  # a remote kernel culled by its server: once more on a fresh one
            finally:
                session.busy = False
                session.last_used = self._clock()
                if fresh:
                    self._pool.fill()  # replace the spare only now: a start would slow this run
                if self._capacity.waiting:
                    # someone waits for a place: close an idle session for them, without
                    # making this run's answer wait for that kernel's end
                    self._in_background(self._room_for_a_waiter())
            await self._end_session(session, GONE_NOTICE)
        raise AssertionError("unreachable: the second attempt never raises _KernelGone")

    async def _session_for(
        self, key: str, owner: str, on_queued: OnQueued | None
    ) -> tuple[_Session, list[str], bool]:
        session = self._sessions.get(key)
        if session is not None:
            notice = self._expiry_notice(session)
            if notice is None:
                return session, [], False
            await self._end_session(session, notice)
        notices = []
        if (ended := self._ended.pop(key, None)) is not None:
            notices.append(ended)
        await self._limit_per_person(owner)
        await self._capacity.acquire(on_queued, self._make_room)
        try:
            kernel = await self._pool.take(on_queued, owner=owner)
        except BaseException:
            self._capacity.release()
            raise
        now = self._clock()
        session = _Session(key, kernel, created=now, last_used=now, owner=owner)
        self._sessions[key] = session
        return session, notices, True

    async def _limit_per_person(self, owner: str) -> None:
        """A person's sessions in other chats count against one limit: close their least
        recently used ones (idle: this person has no other run going) to make room."""
        mine = sorted(
            (s for s in self._sessions.values() if s.owner == owner and not s.ended),
            key=lambda s: s.last_used,
        )
        while len(mine) >= self.limits.max_sessions_per_person:
            oldest = mine.pop(0)
            await self._end_session(
                oldest,
                "Your session here was closed because you started one in another chat "
                f"(at most {self.limits.max_sessions_per_person} per person); this is a fresh one.",
            )

    def _expiry_notice(self, session: _Session) -> str | None:
        now = self._clock()
        if not session.kernel.alive:
            how = session.kernel.exit_description or "stopped"
            if how.startswith(FLOOD):
                why = how.split(": ", 1)[-1]
                return f"Your previous session was stopped: {why} (a flood). This is a fresh one."
            return f"Your previous session's kernel stopped ({how}); this is a fresh one."
        if now - session.last_used > self.limits.idle_timeout_s:
            minutes = duration(self.limits.idle_timeout_s)
            return (
                f"Your previous session ended after {minutes} without a run; this is a fresh one."
            )
        if now - session.created > self.limits.max_age_s:
            minutes = duration(self.limits.max_age_s)
            return f"Your previous session reached its {minutes} limit; this is a fresh one."
        return None

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _room_for_a_waiter(self) -> None:
        if self._capacity.waiting:  # still someone waiting (no other session ended meanwhile)
            await self._make_room()

    async def _make_room(self) -> bool:
        idle = [s for s in self._sessions.values() if not s.busy and not s.ended]
        if not idle:
            return False
        victim = min(idle, key=lambda s: s.last_used)
        await self._end_session(
            victim,
            "Your previous session was closed to make room for other users; this is a fresh one.",
        )
        return True

    async def _end_session(self, session: _Session, notice: str | None = None) -> None:
        if session.ended:
            return
        session.ended = True
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        self._capacity.release()
        if notice is not None:
            self._ended[session.key] = notice
            self._ended.move_to_end(session.key)
            while len(self._ended) > ENDED_MEMORY:
                self._ended.popitem(last=False)
        await self._backend.shutdown(session.kernel)

    async def _reap_loop(self) -> None:
        interval = max(0.5, min(30.0, self.limits.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_sessions()
            except Exception:
                log.exception("session reaper failed")

    async def _execute(
        self, session: _Session, code: str, notices: list[str], *, may_retry: bool = False
    ) -> RunResult:
        limits = self.limits
        kernel = session.kernel
        collector = Collector(limits)
        started = time.monotonic()
        exec_task = asyncio.create_task(self._backend.execute(kernel, code, collector))
        limit_task = asyncio.create_task(collector.limit_hit.wait())
        interrupted = killed = timed_out = False
        usage: KernelUsage | None = None
        try:
            await asyncio.wait(
                {exec_task, limit_task}, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not exec_task.done():
                timed_out = not collector.limit_hit.is_set()
                collector.stop()
                interrupted = True
                await self._backend.interrupt(kernel)
                await asyncio.wait({exec_task}, timeout=limits.interrupt_grace_s)
                if not exec_task.done():
                    killed = True
                    usage = self._backend.usage(kernel)  # what it was doing, before the kill
                    await self._end_session(session)
        except asyncio.CancelledError:
            await self._end_session(session)  # state unknown: never leave it running
            raise
        finally:
            limit_task.cancel()
            if not exec_task.done():
                exec_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await exec_task
        reply: ExecReply | None = None
        if exec_task.done() and not exec_task.cancelled():
            if exec_task.exception() is None:
                reply = exec_task.result()
            else:
                log.error("execute failed on %s", kernel, exc_info=exec_task.exception())
                reply = ExecReply(ExecOutcome.DIED)
        if may_retry and reply is not None and reply.outcome is ExecOutcome.GONE:
            raise _KernelGone()
        outputs = collector.outputs(interrupted=interrupted)
        if not killed and kernel.alive:
            usage = self._backend.usage(kernel)
        status, reset_notice, more = verdict(
            limits,
            cancel_reason=session.cancel_reason,
            reply=None if killed else reply,
            killed=killed,
            timed_out=timed_out,
            over_limit=collector.limit_hit.is_set(),
            error=next((o for o in outputs if isinstance(o, ErrorOutput)), None),
            usage=usage,
            exit_description=kernel.exit_description,
        )
        if reset_notice is not None:
            await self._end_session(session)
        all_notices = [*notices, *more]
        if reset_notice:
            all_notices.append(reset_notice)
        all_notices += image_notices(collector, limits)
        if strays := getattr(kernel, "strays_stopped", 0):  # the fence's end-of-run sweep
            all_notices.append(strays_notice(strays))
        return RunResult(
            outputs=outputs,
            status=status,
            session_reset=reset_notice is not None or bool(notices),
            notices=tuple(all_notices),
            duration_s=time.monotonic() - started,
            images_dropped=collector.images_dropped,
            output_truncated=collector.truncated,
        )


@functools.cache
def _package_versions() -> tuple[str, ...]:
    found = []
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return tuple(found)
