"""KaggleRunner: ``/run --gpu`` as one batch run on Kaggle's free GPU, returned as a RunResult.

Kaggle has no live kernel to attach to, so each run is one private script kernel with a fresh
slug: pushed, polled, read back, deleted. No variables carry over between runs (every reply
says so). The flow of one :meth:`KaggleRunner.run`:

1. refuse at once when the backend is off, the user already has a ``--gpu`` run, the bot's queue
   is full, or a budget is spent (the user's GPU minutes today, the deployment's GPU hours in the
   last 7 days, the account's quota as Kaggle reports it);
2. wait in the bot's own fair queue for one of ``max_concurrent`` places (Kaggle caps GPU
   sessions per account), with the position shown;
3. record the slug in SQLite, then push. A push answered with throttling or 5xx may still have
   been accepted: look for the slug before pushing again (never two sessions for one run). Kaggle's
   "Maximum batch GPU session count" (the account busy elsewhere) → retire that slug and wait;
4. poll the session status with jittered exponential backoff; a finished status seen before
   the run was ever queued/running is ignored for ``stale_status_grace_s`` unless the output
   already holds the wrapper's result file (the slug is fresh); our own deadlines
   (queue time, then run time) stop a run that never ends;
5. read the output listing: the log (split into stdout and stderr, cleaned, capped), the
   wrapper's result file and PNGs from signed URLs (size-capped, without the token);
6. ALWAYS delete the kernel (deleting stops billing), even when the run was cancelled; a slug
   whose deletion failed stays in the ledger and is deleted by the reaper (here or after a
   restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_never

from bot import logs
from bot.kernels.errors import (
    Busy,
    GpuQueueFull,
    KaggleDisabled,
    KaggleRejected,
    KaggleUnavailable,
    ServiceClosed,
)
from bot.kernels.kaggle import ledger
from bot.kernels.kaggle.budget import Budgets
from bot.kernels.kaggle.client import (
    ACTIVE,
    CANCEL_ACKNOWLEDGED,
    CANCEL_REQUESTED,
    COMPLETE,
    QUEUED,
    RUNNING,
    TERMINAL,
    ApiErrorKind,
    KaggleApiError,
    KaggleClient,
    OutputListing,
    Quota,
    short,
)
from bot.kernels.kaggle.script import (
    PNG_MAGIC,
    RESULT_FILE,
    ScriptResult,
    build_script,
    parse_log,
    parse_result,
    plot_index,
)
from bot.kernels.kaggle.settings import KaggleSettings
from bot.kernels.models import (
    ErrorOutput,
    ImageOutput,
    Output,
    ResultOutput,
    RunResult,
    RunStatus,
    StreamOutput,
)
from bot.kernels.scheduler import FairQueue
from bot.store import Store
from bot.text import duration

log = logging.getLogger(__name__)

T = TypeVar("T")
OnProgress = Callable[[str], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

GPU_NAMES = {
    "NvidiaTeslaT4": "T4",
    "NvidiaTeslaT4Highmem": "T4",
    "NvidiaL4": "L4",
    "NvidiaL4X1": "L4",
    "NvidiaTeslaA100": "A100",
    "NvidiaH100": "H100",
    "NvidiaTeslaP100": "P100",
    "NvidiaRtxPro6000": "RTX PRO 6000",
}
QUEUED_MESSAGE = "⏳ Queued on Kaggle's free GPU — this takes minutes, not seconds."
BATCH_NOTICE = (
    "Ran on Kaggle's free {gpu} GPU as a batch job: no variables carry over between "
    "--gpu runs (each starts from scratch)."
)
QUEUE_TIMEOUT = "queue_timeout"
RUN_TIMEOUT = "run_timeout"


def gpu_name(accelerator: str) -> str:
    return GPU_NAMES.get(accelerator, accelerator)


@dataclass
class RunnerStats:
    """What the runner did (tests and the benchmark read it)."""

    runs: int = 0
    pushes: int = 0
    unclear_pushes: int = 0
    adopted_pushes: int = 0  # an unclear push found on Kaggle and used
    capacity_refusals: int = 0
    polls: int = 0
    stale_ignored: int = 0
    deletes: int = 0
    delete_failures: int = 0
    reaped: int = 0


@dataclass(frozen=True, slots=True)
class KaggleInfo:
    """State of the backend for ``/run --info``."""

    enabled: bool
    reason: str | None
    accelerator: str
    running: int
    queued: int
    max_concurrent: int
    wall_s: float
    user_daily_gpu_minutes: float
    weekly_gpu_hours: float
    account_quota: Quota | None = None

    @property
    def gpu(self) -> str:
        return gpu_name(self.accelerator)

    def describe(self) -> str:
        if not self.enabled:
            return f"Kaggle GPU: off ({self.reason})"
        line = (
            f"Kaggle {self.gpu} (batch, no state between runs): {self.running}/"
            f"{self.max_concurrent} running, {self.queued} queued; up to "
            f"{duration(self.wall_s)} per run, {self.user_daily_gpu_minutes:g} GPU min "
            f"per user per day, {self.weekly_gpu_hours:g} GPU h per week for the bot"
        )
        if self.account_quota is not None:
            line += f"; account quota left {duration(self.account_quota.left_s)}"
        return line


class _Progress:
    """Progress lines to the user: forced ones at once, periodic ones at most every N s."""

    def __init__(self, on_progress: OnProgress | None, clock: Clock, every_s: float) -> None:
        self._cb = on_progress
        self._clock = clock
        self._every = every_s
        self._last: float | None = None
        self.sent: list[str] = []

    async def say(self, text: str, *, force: bool = False) -> None:
        now = self._clock()
        if not force and self._last is not None and now - self._last < self._every:
            return
        self._last = now
        self.sent.append(text)
        if self._cb is None:
            return
        try:
            await self._cb(text)
        except Exception:  # a chat hiccup must not stop a billed run from being cleaned up
            log.warning("Kaggle progress callback failed", exc_info=True)


@dataclass(eq=False)
class _Job:
    user_key: str
    code: str
    limit_s: float
    waited_s: float = 0.0
    slug: str | None = None
    slugs: list[str] = field(default_factory=list)  # every slug recorded for this run
    deleted: set[str] = field(default_factory=set)
    pushed_at: float | None = None
    running_at: float | None = None
    ended_at: float | None = None
    seen_active: bool = False
    failure: str = ""
    outcome: str = "not_started"
    listing: OutputListing | None = None  # read early to tell a real finish from a stale one


class KaggleRunner:
    """Batch GPU runs on Kaggle. See the module docstring for the flow.

    ``store`` must have been migrated (``store.migrate(bot.migrations.steps())``) so the ``kaggle_runs`` table exists.
    ``clock`` (wall time, seconds) and ``sleep`` are injectable so tests run without waiting.
    """

    def __init__(
        self,
        settings: KaggleSettings,
        store: Store,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        transport: Any = None,
        download_transport: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.instance = uuid.uuid4().hex[:12]
        self.stats = RunnerStats()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._transport = transport
        self._download_transport = download_transport
        self._client: KaggleClient | None = None
        self._token: str | None = None
        self._owner: str | None = settings.username
        self._slots = FairQueue(settings.max_concurrent)
        self._busy: set[str] = set()
        self._active: set[_Job] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cleanup: set[asyncio.Task[Any]] = set()
        self._budgets = Budgets(settings, store, clock, self._fetch_quota)
        self._reaper: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._unavailable: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.settings.enabled and self._unavailable is None

    @property
    def client(self) -> KaggleClient:
        if self._client is None:
            raise KaggleDisabled(detail="the Kaggle runner has not been started")
        return self._client

    async def start(self) -> None:
        """Read the token, learn the account's username, delete kernels left behind by a
        previous process, and start the periodic reaper. Idempotent."""
        async with self._start_lock:
            if self._started or self._closed:
                return
            self._started = True
            if not self.settings.enabled:
                log.info("Kaggle GPU backend off: %s", self.settings.disabled_reason)
                return
            try:
                self._token = self.settings.read_token()
                logs.add_secret(self._token)
            except OSError as exc:
                self._unavailable = f"the Kaggle token file cannot be read ({type(exc).__name__})"
            else:
                if self._token is None:
                    self._unavailable = "the Kaggle token is empty"
            if self._unavailable is not None:
                log.error("Kaggle GPU backend off: %s", self._unavailable)
                return
            assert self._token is not None
            self._client = KaggleClient(
                self.settings,
                self._token,
                transport=self._transport,
                download_transport=self._download_transport,
                sleep=self._sleep,
            )
            try:
                await self._ensure_owner()
                await self.reap()
            except Exception:  # the API may be down at start: the reaper tries again
                log.warning("Kaggle start-up clean-up failed; the reaper will retry", exc_info=True)
            self._reaper = asyncio.create_task(self._reap_loop())

    async def aclose(self, grace_s: float = 15.0) -> None:
        """Stop: cancel runs in progress (each deletes its kernel) and wait for them."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for task in list(self._tasks):
            task.cancel()
        pending = [*self._tasks, *self._cleanup]
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self.reap()  # whatever the runs could not delete themselves
            await self._client.aclose()

    def info(self) -> KaggleInfo:
        s = self.settings
        reason = s.disabled_reason or self._unavailable
        if self._closed:
            reason = "shut down"
        quota = self._budgets.last_quota
        return KaggleInfo(
            enabled=reason is None,
            reason=reason,
            accelerator=s.accelerator,
            running=self._slots.holders,
            queued=self._slots.waiting,
            max_concurrent=s.max_concurrent,
            wall_s=s.wall_s,
            user_daily_gpu_minutes=s.user_daily_gpu_minutes,
            weekly_gpu_hours=s.weekly_gpu_hours,
            account_quota=quota,
        )

    # -- the command -------------------------------------------------------------------------
    async def run(
        self, user_key: str, code: str, *, on_progress: OnProgress | None = None
    ) -> RunResult:
        """Run ``code`` once on Kaggle's GPU. Raises a KernelError (with ``user_message``) when
        the run is refused; every run that was accepted returns a RunResult."""
        await self.start()
        self._check_usable()
        s = self.settings
        if user_key in self._busy:
            raise Busy("You already have a --gpu run queued or running. Wait for its result.")
        if len(code) > s.max_code_chars:
            notice = (
                f"Your code is too long for a --gpu run (over {s.max_code_chars:,} characters)."
            )
            return RunResult((), RunStatus.ERROR, notices=(notice,))
        if self._slots.waiting >= s.max_queue and not self._slots.free:
            raise GpuQueueFull()
        code = code.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from chat
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._busy.add(user_key)
        self.stats.runs += 1
        try:
            await self._ensure_owner()
            await self._admit(user_key)  # refuse before queueing when a budget is spent
            progress = _Progress(on_progress, self._clock, s.progress_every_s)
            await progress.say(QUEUED_MESSAGE, force=True)

            async def on_queued(position: int) -> None:
                await progress.say(
                    f"⏳ Waiting for a Kaggle GPU slot: you are number {position} in line "
                    f"({s.max_concurrent} --gpu runs go at once).",
                    force=True,
                )

            queued_at = self._clock()
            async with self._slots.slot(on_queued):
                limit = await self._admit(user_key)  # again: others may have spent it meanwhile
                job = _Job(user_key, code, limit, waited_s=self._clock() - queued_at)
                self._active.add(job)
                try:
                    return await self._execute(job, progress)
                finally:
                    self._active.discard(job)
        finally:
            self._busy.discard(user_key)
            if task is not None:
                self._tasks.discard(task)

    def _check_usable(self) -> None:
        if self._closed:
            raise ServiceClosed()
        if not self.settings.enabled:
            raise KaggleDisabled(detail=self.settings.disabled_reason)
        if self._unavailable is not None:
            raise KaggleUnavailable(
                "The Kaggle GPU backend is misconfigured on this bot; the operator has been told.",
                detail=self._unavailable,
            )

    async def _ensure_owner(self) -> str:
        if self._owner is not None:
            return self._owner
        assert self._token is not None
        try:
            self._owner = await self.client.introspect(self._token)
        except KaggleApiError as exc:
            raise _unavailable(exc) from exc
        return self._owner

    async def _admit(self, user_key: str) -> float:
        """Seconds of GPU time this run may use (GpuBudgetExceeded when a budget is spent)."""
        reserved = sum(j.limit_s for j in self._active if j.user_key != user_key)
        return await self._budgets.admit(user_key, reserved)

    async def _fetch_quota(self) -> Quota | None:
        return await self.client.quota()

    # -- one run -----------------------------------------------------------------------------
    async def _execute(self, job: _Job, progress: _Progress) -> RunResult:
        try:
            await self._push(job, progress)
            job.outcome = await self._poll(job, progress)
            return await self._collect(job)
        except asyncio.CancelledError:
            job.outcome = "cancelled_by_bot"
            raise
        except Exception:
            if job.outcome == "not_started":
                job.outcome = "failed"
            raise
        finally:
            await self._shielded(self._finish(job))

    async def _shielded(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run clean-up to the end even when the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(coro)
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)
        return await asyncio.shield(task)

    def _new_slug(self) -> str:
        return f"{self.settings.slug_prefix}-{secrets.token_hex(6)}"

    async def _record(self, job: _Job) -> str:
        slug = self._new_slug()
        owner = await self._ensure_owner()
        now = self._clock()
        await self.store.call(
            lambda db: ledger.record(db, slug, owner, job.user_key, self.instance, now)
        )
        job.slug = slug
        job.slugs.append(slug)
        return slug

    async def _set_state(self, slug: str, state: str) -> None:
        now = self._clock()
        await self.store.call(lambda db: ledger.set_state(db, slug, state, now))

    async def _push(self, job: _Job, progress: _Progress) -> None:
        s = self.settings
        owner = await self._ensure_owner()
        script = build_script(job.code, max_images=s.max_images)
        timeout_s = s.session_timeout_s(job.limit_s)
        give_up_at = self._clock() + s.queue_timeout_s
        unclear = capacity_waits = 0
        while True:
            slug = job.slug or await self._record(job)
            self.stats.pushes += 1
            try:
                result = await self.client.save_kernel(
                    owner,
                    slug,
                    title=slug,  # a title that slugifies to the slug itself
                    text=script,
                    accelerator=s.accelerator,
                    session_timeout_s=timeout_s,
                )
            except KaggleApiError as exc:
                if not exc.transient:
                    raise _refused(exc) from exc
                # Throttling/5xx/no answer: the push may have been accepted all the same.
                self.stats.unclear_pushes += 1
                log.warning("Kaggle push of %s unclear (%s); looking for it", slug, exc)
                found = await self._reconcile(owner, slug)
                if found:
                    self.stats.adopted_pushes += 1
                    break
                unclear += 1
                if unclear >= s.push_attempts:
                    raise KaggleUnavailable(
                        detail=f"push of {slug} failed {unclear} times: {exc}"
                    ) from exc
                if found is None:  # could not tell: never push that slug again
                    await self._retire(job, slug)
                wait = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else s.retry_initial_s * 2**unclear
                )
                await self._sleep(
                    min(s.retry_max_s, wait) + self._rng.uniform(0, s.retry_initial_s)
                )
                continue
            if result.capacity:
                # The account's GPU sessions are all in use (by us or by its owner's work).
                self.stats.capacity_refusals += 1
                await self._retire(job, slug)
                if self._clock() + s.capacity_wait_s > give_up_at:
                    raise KaggleUnavailable(
                        "Kaggle kept refusing a new GPU session for this bot's account "
                        "(all its sessions are in use). Please try again later.",
                        detail=f"capacity: {result.error}",
                    )
                await progress.say(
                    "⏳ All GPU sessions of the bot's Kaggle account are in use; "
                    "waiting for one to free up…",
                    force=capacity_waits == 0,
                )
                capacity_waits += 1
                await self._sleep(s.capacity_wait_s * (1 + 0.2 * self._rng.random()))
                continue
            if result.error:
                raise KaggleRejected(
                    f"Kaggle refused the run: {result.error}", detail=f"push {slug}: {result.error}"
                )
            break
        job.pushed_at = self._clock()
        await self._set_state(slug, ledger.PUSHED)

    async def _reconcile(self, owner: str, slug: str) -> bool | None:
        """After an unclear push: True if the kernel exists, False if Kaggle says it does not,
        None if it could not be told."""
        s = self.settings
        answered = False
        for i in range(s.reconcile_checks):
            if i:
                await self._sleep(s.reconcile_delay_s)
            try:
                if await self.client.kernel_exists(owner, slug):
                    return True
                answered = True
            except KaggleApiError as exc:
                if exc.kind is ApiErrorKind.AUTH:
                    raise _unavailable(exc) from exc
                log.info("Kaggle reconcile of %s: %s", slug, exc)
        return False if answered else None

    async def _retire(self, job: _Job, slug: str) -> None:
        """Give up a slug that never ran: delete it now (the reaper retries on failure)."""
        await self._set_state(slug, ledger.RETIRED)
        job.slug = None
        await self._delete(job, slug)

    async def _poll(self, job: _Job, progress: _Progress) -> str:
        s = self.settings
        owner = await self._ensure_owner()
        slug = job.slug
        assert slug is not None and job.pushed_at is not None
        pushed_at = job.pushed_at
        gpu = gpu_name(s.accelerator)

        def deadline() -> float:
            if job.running_at is None:
                return pushed_at + s.queue_timeout_s
            return job.running_at + job.limit_s + s.startup_grace_s

        async def once() -> str | None:
            now = self._clock()
            if now >= deadline():
                return RUN_TIMEOUT if job.running_at is not None else QUEUE_TIMEOUT
            # Alive, whatever Kaggle answers: another process's reaper must not take this run.
            await self.store.call(lambda db: ledger.heartbeat(db, [slug], now))
            try:
                status = await self.client.session_status(owner, slug)
            except KaggleApiError as exc:
                if exc.kind is ApiErrorKind.AUTH:
                    raise _unavailable(exc) from exc
                log.info("Kaggle status of %s: %s (still polling)", slug, exc)
                return None
            self.stats.polls += 1
            now = self._clock()
            if status.state in ACTIVE:
                job.seen_active = True
                if status.state == RUNNING and job.running_at is None:
                    job.running_at = now
                    await self.store.call(lambda db: ledger.mark_running(db, slug, now))
                    await progress.say(f"▶ Running on a {gpu} now.", force=True)
                elif status.state == RUNNING and job.running_at is not None:
                    so_far = duration(now - job.running_at)
                    await progress.say(f"⏳ Running on a {gpu}, {so_far} so far.")
                elif status.state == QUEUED:
                    waited = duration(now - pushed_at)
                    await progress.say(f"⏳ Still in Kaggle's queue ({waited} so far).")
                return None
            if status.state in TERMINAL:
                if (
                    not job.seen_active
                    and now < pushed_at + s.stale_status_grace_s
                    and not await self._finished_for_real(job, owner, slug)
                ):
                    self.stats.stale_ignored += 1  # the last session of something else
                    return None
                job.ended_at = now
                job.failure = status.failure
                if status.state in (CANCEL_REQUESTED, CANCEL_ACKNOWLEDGED):
                    return "cancelled"
                return "complete" if status.state == COMPLETE else "error"
            return None  # unknown or "new script": keep polling

        def wait(state: RetryCallState) -> float:
            n = state.attempt_number
            base = min(s.poll_max_s, s.poll_initial_s * 2 ** (n - 1))
            base += float(self._rng.uniform(0, s.poll_jitter_s))
            return max(0.0, min(float(base), float(deadline() - self._clock())))

        await self._sleep(min(s.poll_initial_s, s.queue_timeout_s))
        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_never,
            wait=wait,
            retry=retry_if_result(lambda r: r is None),
            reraise=True,
        )
        outcome: str = await retrying(once)
        if job.ended_at is None:
            job.ended_at = self._clock()
        return outcome

    async def _finished_for_real(self, job: _Job, owner: str, slug: str) -> bool:
        """A finished status before the run was seen queued or running is real only when the
        output holds our wrapper's result file (the slug is fresh: nothing else wrote it)."""
        try:
            listing = await self.client.list_output(owner, slug)
        except KaggleApiError as exc:
            if exc.kind is ApiErrorKind.AUTH:
                raise _unavailable(exc) from exc
            return False
        if any(f.name == RESULT_FILE for f in listing.files):
            job.listing = listing
            return True
        return False

    async def _collect(self, job: _Job) -> RunResult:
        s = self.settings
        gpu = gpu_name(s.accelerator)
        notices: list[str] = []
        waited = job.waited_s
        if job.pushed_at is not None:
            started = job.running_at if job.running_at is not None else job.ended_at
            waited += max(0.0, (started or job.pushed_at) - job.pushed_at)
        if job.outcome == QUEUE_TIMEOUT:
            notices.append(
                f"Kaggle did not start the run within {duration(s.queue_timeout_s)}, so "
                "it was cancelled. Kaggle's free GPUs may be busy: try again later."
            )
            return RunResult((), RunStatus.TIMEOUT, notices=tuple(notices))
        if job.outcome == RUN_TIMEOUT:
            notices.append(
                f"Stopped: your code ran longer than {duration(job.limit_s)} on the GPU "
                "(the limit for this run); the Kaggle session was deleted."
            )
            return RunResult((), RunStatus.TIMEOUT, notices=tuple(notices), duration_s=job.limit_s)
        owner = await self._ensure_owner()
        assert job.slug is not None
        try:
            listing = job.listing or await self.client.list_output(owner, job.slug)
        except KaggleApiError as exc:
            if exc.kind is ApiErrorKind.AUTH:
                raise _unavailable(exc) from exc
            log.warning("Kaggle output of %s unavailable: %s", job.slug, exc)
            listing = None
            notices.append("The run finished but its output could not be fetched from Kaggle.")
        outputs, images_dropped, truncated, result = await self._read_outputs(job, listing)
        if result is not None:
            status = RunStatus.OK if result.ok else RunStatus.ERROR
        elif job.outcome == "cancelled":
            status = RunStatus.CANCELLED
            notices.append("The run was cancelled on Kaggle's side.")
        elif job.outcome == "error" and self._ran_out_of_time(job):
            status = RunStatus.TIMEOUT
            notices.append(f"Stopped by Kaggle: the code ran longer than {duration(job.limit_s)}.")
        else:
            status = RunStatus.CRASHED
            if job.outcome == "error":
                why = f": {job.failure}" if job.failure else ""
                notices.append(f"Kaggle reported that the run failed{why}.")
            elif listing is not None:
                notices.append(
                    "The script ended without reporting a result (it may have exited early "
                    "or been killed for using too much memory)."
                )
        if listing is not None and listing.more_pages:
            notices.append("Kaggle listed more output files than the bot reads.")
        if waited >= 1:
            notices.append(f"Waited {duration(waited)} for Kaggle's GPU.")
        notices.append(BATCH_NOTICE.format(gpu=gpu))
        ran_s = 0.0
        if job.running_at is not None and job.ended_at is not None:
            ran_s = max(0.0, job.ended_at - job.running_at)
        return RunResult(
            outputs=tuple(outputs),
            status=status,
            notices=tuple(notices),
            duration_s=ran_s,
            images_dropped=images_dropped,
            output_truncated=truncated,
        )

    def _ran_out_of_time(self, job: _Job) -> bool:
        if job.running_at is None or job.ended_at is None:
            return False
        return job.ended_at - job.running_at >= job.limit_s

    async def _read_outputs(
        self, job: _Job, listing: OutputListing | None
    ) -> tuple[list[Output], int, bool, ScriptResult | None]:
        s = self.settings
        outputs: list[Output] = []
        if listing is None:
            return outputs, 0, False, None
        text = parse_log(listing.log, s.output_bytes)
        for stream, chunk in text.chunks:
            outputs.append(StreamOutput("stderr" if stream == "stderr" else "stdout", chunk))
        truncated = text.truncated
        result: ScriptResult | None = None
        files = {f.name: f for f in listing.files}
        if RESULT_FILE in files:
            raw = await self._download(job, files[RESULT_FILE].url, s.max_result_bytes)
            result = parse_result(raw, s.output_bytes) if raw is not None else None
        if result is not None and result.value is not None:
            outputs.append(ResultOutput(result.value))
        if result is not None and not result.ok:
            outputs.append(
                ErrorOutput(result.ename, result.evalue, result.traceback or result.ename)
            )
        plots = sorted((idx, f) for f in listing.files if (idx := plot_index(f.name)) is not None)
        dropped = max(0, len(plots) - s.max_images)
        for _, file in plots[: s.max_images]:
            png = await self._download(job, file.url, s.max_image_bytes)
            if png is None or not png.startswith(PNG_MAGIC):
                dropped += 1
                continue
            outputs.append(ImageOutput(png))
        return outputs, dropped, truncated, result

    async def _download(self, job: _Job, url: str, max_bytes: int) -> bytes | None:
        now = self._clock()
        slugs = [x for x in job.slugs if x not in job.deleted]
        await self.store.call(lambda db: ledger.heartbeat(db, slugs, now))
        try:
            return await self.client.download(url, max_bytes)
        except KaggleApiError as exc:
            log.warning("Kaggle output download failed: %s", exc)
            return None

    async def _finish(self, job: _Job) -> None:
        """Charge the GPU time, then delete every kernel this run created."""
        now = self._clock()
        slug = job.slug
        if slug is not None and job.pushed_at is not None:
            end = job.ended_at if job.ended_at is not None else now
            if job.running_at is not None:
                seconds = end - job.running_at
            elif job.outcome in ("complete", "error"):
                seconds = end - job.pushed_at  # finished between two polls
            else:
                seconds = 0.0
            outcome = job.outcome
            await self.store.call(lambda db: ledger.charge(db, slug, seconds, outcome, now))
        for each in job.slugs:
            if each not in job.deleted:
                await self._delete(job, each)

    async def _delete(self, job: _Job | None, slug: str, owner: str | None = None) -> bool:
        owner = owner or await self._ensure_owner()
        try:
            await self.client.delete_kernel(owner, slug)
        except KaggleApiError as exc:
            self.stats.delete_failures += 1
            log.warning("Kaggle kernel %s not deleted yet (%s); the reaper will retry", slug, exc)
            return False
        self.stats.deletes += 1
        if job is not None:
            job.deleted.add(slug)
        await self._set_state(slug, ledger.DELETED)
        return True

    # -- clean-up of what others left ---------------------------------------------------------
    async def reap(self) -> int:
        """Delete kernels left behind (a crashed process, a failed deletion). Returns how many."""
        if self._client is None:
            return 0
        s = self.settings
        now = self._clock()
        rows = await self.store.call(
            lambda db: ledger.leftovers(db, self.instance, now - s.orphan_after_s)
        )
        count = 0
        for row in rows:
            if await self._delete(None, row.slug, owner=row.owner):
                count += 1
                log.info("deleted Kaggle kernel %s/%s left by an earlier run", row.owner, row.slug)
        self.stats.reaped += count
        await self.store.call(lambda db: ledger.prune(db, now - 8 * 86400.0))
        return count

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            try:
                await self.reap()
            except Exception:
                log.exception("Kaggle reaper failed")


def _unavailable(exc: KaggleApiError) -> KaggleUnavailable:
    if exc.kind is ApiErrorKind.AUTH:
        return KaggleUnavailable(
            "Kaggle refused this bot's API token, so --gpu runs cannot start. "
            "The operator needs to check it.",
            detail=str(exc),
        )
    return KaggleUnavailable(detail=str(exc))


def _refused(exc: KaggleApiError) -> Exception:
    if exc.kind is ApiErrorKind.AUTH:
        return _unavailable(exc)
    return KaggleRejected(f"Kaggle refused the run: {short(exc.message, 200)}", detail=str(exc))
