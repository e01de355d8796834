"""The Jupyter Kernel Gateway / Enterprise Gateway backend of /run.

``GatewaySettings`` (light, pydantic only) configures one gateway; ``GatewayBackend(settings,
limits)`` is a :class:`bot.kernels.backend.KernelBackend` for ``KernelService(limits,
backend=…)``. Modules: ``settings``, ``errors`` (user messages), ``client`` (REST),
``channel`` (one kernel's WebSocket messages), ``backend``. The bubblewrap kernelspec a gateway
on a host we manage should use is :mod:`bot.kernels.kernelspec`; deployment: ``docs/gpu.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.kernels.gateway.backend import GatewayBackend, kernel_username
    from bot.kernels.gateway.settings import GatewaySettings

_LAZY = {
    "GatewayBackend": "bot.kernels.gateway.backend",
    "GatewaySettings": "bot.kernels.gateway.settings",
    "kernel_username": "bot.kernels.gateway.backend",
}

__all__ = ["GatewayBackend", "GatewaySettings", "kernel_username"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bot.kernels.gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
