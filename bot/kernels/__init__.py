"""The /run kernel service: pooled, sandboxed Jupyter kernels, platform neutral.

Usage::

    service = KernelService(KernelLimits(), protected_paths=[db, config, project_dir, dotenv])
    await service.start()                      # self-test; fills the warm pool in the background
    if not service.available:
        log(service.unavailable_reason)          # names the fix (apt-get install bubblewrap, ...)
    result = await service.run(f"{chat}:{user}", user, code, on_queued=tell_position)
    result.status, result.outputs, result.notices  # RunStatus, Stream/Result/Image/ErrorOutput
    await service.reset(f"{chat}:{user}")
    await service.aclose()

``run`` raises a :class:`KernelError` (with ``user_message``) when it refuses a run: sandbox
unavailable, Busy, RateLimited, NoGpuBackend, KernelStartError, ServiceClosed. Every run that
starts returns a :class:`RunResult`, whatever the code did.

Requirements of the local backend: Linux, ``bwrap`` (``apt-get install bubblewrap``),
unprivileged user namespaces, and when the bot runs as root ``unshare``/``setpriv``/``mount``
(util-linux) to drop to an unprivileged uid per kernel.

See ``service.py`` for the flow of a run, ``sandbox.py`` for what the sandbox exposes and
``models.KernelLimits`` for the limits and why their defaults are what they are.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and readers
    from bot.kernels.backend import BackendState, KernelBackend, KernelHandle, KernelUsage
    from bot.kernels.errors import (
        Busy,
        KernelError,
        KernelStartError,
        NoGpuBackend,
        RateLimited,
        SandboxUnavailable,
        ServiceClosed,
    )
    from bot.kernels.local import LocalBackend
    from bot.kernels.models import (
        ErrorOutput,
        ImageOutput,
        KernelInfo,
        Output,
        ResultOutput,
        RunResult,
        RunStatus,
        StreamOutput,
    )
    from bot.kernels.service import KernelService
    from bot.kernels.settings import KernelLimits, RunSettings

# Loaded on first use: the settings import ``bot.kernels.settings`` at every start, and that
# must not pull in jupyter_client and zmq.
_LAZY = {
    "BackendState": "bot.kernels.backend",
    "Busy": "bot.kernels.errors",
    "ErrorOutput": "bot.kernels.models",
    "ImageOutput": "bot.kernels.models",
    "KernelBackend": "bot.kernels.backend",
    "KernelError": "bot.kernels.errors",
    "KernelHandle": "bot.kernels.backend",
    "KernelInfo": "bot.kernels.models",
    "KernelLimits": "bot.kernels.settings",
    "KernelService": "bot.kernels.service",
    "KernelStartError": "bot.kernels.errors",
    "KernelUsage": "bot.kernels.backend",
    "LocalBackend": "bot.kernels.local",
    "NoGpuBackend": "bot.kernels.errors",
    "Output": "bot.kernels.models",
    "RateLimited": "bot.kernels.errors",
    "ResultOutput": "bot.kernels.models",
    "RunResult": "bot.kernels.models",
    "RunSettings": "bot.kernels.settings",
    "RunStatus": "bot.kernels.models",
    "SandboxUnavailable": "bot.kernels.errors",
    "ServiceClosed": "bot.kernels.errors",
    "StreamOutput": "bot.kernels.models",
}

__all__ = [
    "BackendState",
    "Busy",
    "ErrorOutput",
    "ImageOutput",
    "KernelBackend",
    "KernelError",
    "KernelHandle",
    "KernelInfo",
    "KernelLimits",
    "KernelService",
    "KernelStartError",
    "KernelUsage",
    "LocalBackend",
    "NoGpuBackend",
    "Output",
    "RateLimited",
    "ResultOutput",
    "RunResult",
    "RunSettings",
    "RunStatus",
    "SandboxUnavailable",
    "ServiceClosed",
    "StreamOutput",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
