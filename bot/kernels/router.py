"""Every ``/run`` backend the operator configured, and which one serves a run.

Plain ``/run`` goes to one kernel service (the local sandboxed pool, or a Jupyter gateway,
``[run] backend``). ``/run --gpu`` tries the GPU backends in the operator's order
(``[run] gpu_route``): a gateway whose kernelspec has a GPU, Kaggle's batch runner, the local
pool when this host has a GPU. A backend that is off, unreachable or full is skipped; when none
can take the run, the user is told why. Sessions, queues, limits and output formatting are the
kernel services' own, the same for every backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from bot import metrics
from bot.kernels.errors import (
    GpuQueueFull,
    KaggleDisabled,
    KaggleUnavailable,
    KernelError,
    KernelStartError,
    NoGpuBackend,
    SandboxUnavailable,
)
from bot.kernels.gateway.errors import GatewayError, KernelNotFound
from bot.kernels.kaggle.runner import KaggleRunner
from bot.kernels.models import KernelInfo, RunResult
from bot.kernels.service import KernelService

log = logging.getLogger(__name__)
OnQueued = Callable[[int], Awaitable[None]]
OnProgress = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Target:
    """One backend a run can go to."""

    name: str  # "local", "gateway:gpu", "kaggle"
    service: KernelService | None = None
    kaggle: KaggleRunner | None = None

    @property
    def gpu(self) -> bool:
        if self.kaggle is not None:
            return True
        return self.service is not None and self.service.info().gpu is not None


class Kernels:
    """The /run port (``bot.core.ports.KernelsPort``) over every configured backend."""

    def __init__(self, plain: Target, gpu_route: Sequence[Target] = ()) -> None:
        self.plain = plain
        self.gpu_route = tuple(gpu_route)
        self.targets = tuple(dict.fromkeys((plain, *gpu_route)))

    async def start(self) -> None:
        for target in self.targets:
            try:
                if target.service is not None:
                    await target.service.start()
                if target.kaggle is not None:
                    await target.kaggle.start()
            except Exception:  # one backend failing to start must not stop the others
                log.exception("/run backend %s failed to start", target.name)

    async def run(
        self,
        session_key: str,
        user_key: str,
        code: str,
        *,
        on_queued: OnQueued | None = None,
        on_progress: OnProgress | None = None,
        on_started: Callable[[], Awaitable[None]] | None = None,
        gpu: bool = False,
    ) -> RunResult:
        result = await self._run(
            session_key,
            user_key,
            code,
            on_queued=on_queued,
            on_progress=on_progress,
            on_started=on_started,
            gpu=gpu,
        )
        metrics.observe_run(result.duration_s, result.status.value)
        return result

    async def _run(
        self,
        session_key: str,
        user_key: str,
        code: str,
        *,
        on_queued: OnQueued | None,
        on_progress: OnProgress | None,
        on_started: Callable[[], Awaitable[None]] | None,
        gpu: bool,
    ) -> RunResult:
        if not gpu:
            assert self.plain.service is not None
            return await self.plain.service.run(
                session_key, user_key, code, on_queued=on_queued, on_started=on_started
            )
        refusals: list[KernelError] = []
        for target in self.gpu_route:
            try:
                if target.kaggle is not None:
                    if not target.kaggle.enabled:
                        continue
                    if on_started is not None:  # a batch job: submitted counts as started
                        await on_started()
                    return await target.kaggle.run(user_key, code, on_progress=on_progress)
                if target.service is not None and target.gpu:
                    return await target.service.run(
                        f"gpu:{target.name}:{session_key}",
                        user_key,
                        code,
                        on_queued=on_queued,
                        on_started=on_started,
                    )
            except KernelError as err:
                if not _try_next(err):
                    raise
                log.info("--gpu run skipped %s: %s", target.name, err)
                refusals.append(err)
        if refusals:
            raise refusals[-1]
        raise NoGpuBackend()

    async def reset(self, session_key: str) -> bool:
        had = False
        for target in self.targets:
            if target.service is not None:
                had |= await target.service.reset(session_key)
                if target is not self.plain:
                    had |= await target.service.reset(f"gpu:{target.name}:{session_key}")
        return had

    def info_now(self) -> KernelInfo:
        """The plain backend's state, without asking remote backends (for health checks)."""
        assert self.plain.service is not None
        return self.plain.service.info()

    async def info(self) -> KernelInfo:
        """The plain backend's state, with one line per configured backend (remote ones asked
        whether they answer)."""
        assert self.plain.service is not None
        base = self.plain.service.info()
        lines = [await _line(t) for t in self.targets]
        return replace(base, backends=tuple(lines), gpu=base.gpu or self._gpu_name())

    def _gpu_name(self) -> str | None:
        """What --gpu runs on first: ``NVIDIA T4 (gateway:gpu)`` or ``Kaggle NvidiaTeslaT4``."""
        for t in self.gpu_route:
            if t.kaggle is not None and t.kaggle.enabled:
                return f"Kaggle {t.kaggle.settings.accelerator} (batch)"
            if t.service is not None and (gpu := t.service.info().gpu) is not None:
                return gpu if t.name == "local" else f"{gpu} ({t.name})"
        return None

    async def aclose(self) -> None:
        await asyncio.gather(
            *(
                t.service.aclose() if t.service is not None else t.kaggle.aclose()  # type: ignore[union-attr]  # a target has one of the two
                for t in self.targets
            ),
            return_exceptions=True,
        )

    def kill_now(self) -> int:
        return sum(t.service.kill_now() for t in self.targets if t.service is not None)


def _try_next(err: KernelError) -> bool:
    """A refusal that another GPU backend may not share (full, down, off, misconfigured)."""
    return isinstance(
        err,
        SandboxUnavailable
        | KernelStartError
        | KaggleDisabled
        | KaggleUnavailable
        | GpuQueueFull
        | GatewayError
        | NoGpuBackend,
    ) and not isinstance(err, KernelNotFound)


async def _line(target: Target) -> str:
    """``gateway:gpu, GPU A100: 1 running, 3 sessions — reachable, 5/8 kernels``."""
    if target.kaggle is not None:
        return target.kaggle.info().describe()
    assert target.service is not None
    info = target.service.info()
    where = "this host's sandbox" if target.name == "local" else target.name
    gpu = f", GPU {info.gpu}" if info.gpu else ""
    line = f"{where}{gpu}: {info.running} running, {info.sessions} sessions"
    if not info.available:
        return f"{line} — off: {info.unavailable_reason}"
    state = await target.service.backend.state()
    if state is not None:
        line += " — reachable" if state.reachable else f" — not reachable ({state.detail})"
        if state.kernels_in_use is not None and state.max_kernels is not None:
            line += f", {state.kernels_in_use}/{state.max_kernels} kernels"
    return line
