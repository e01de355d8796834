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

if TYPE_CHECKING:
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
        KernelLimits,
        Output,
        ResultOutput,
        RunResult,
        RunStatus,
        StreamOutput,
    )
    from bot.kernels.service import KernelService

# Loaded on first use, so that light modules (``bot.kernels.gateway.settings``, which the
# settings import) do not pull in zmq and jupyter_client.
_LAZY = {
    "BackendState": "bot.kernels.backend",
    "Busy": "bot.kernels.errors",
    "ErrorOutput": "bot.kernels.models",
    "ImageOutput": "bot.kernels.models",
    "KernelBackend": "bot.kernels.backend",
    "KernelError": "bot.kernels.errors",
    "KernelHandle": "bot.kernels.backend",
    "KernelInfo": "bot.kernels.models",
    "KernelLimits": "bot.kernels.models",
    "KernelService": "bot.kernels.service",
    "KernelStartError": "bot.kernels.errors",
    "KernelUsage": "bot.kernels.backend",
    "LocalBackend": "bot.kernels.local",
    "NoGpuBackend": "bot.kernels.errors",
    "Output": "bot.kernels.models",
    "RateLimited": "bot.kernels.errors",
    "ResultOutput": "bot.kernels.models",
    "RunResult": "bot.kernels.models",
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
    "RunStatus",
    "SandboxUnavailable",
    "ServiceClosed",
    "StreamOutput",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bot.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
