"""The Kaggle GPU backend: ``/run --gpu`` as batch runs on Kaggle's free T4s.

Usage (the lead wires it; see ``docs/kaggle.md`` for the operator's side)::

    runner = KaggleRunner(settings.kaggle, store)       # store migrated: kaggle_runs exists
    await runner.start()          # token, username, deletes kernels a crash left behind
    result = await runner.run(f"{platform}:{user}", code, on_progress=notify)  # -> RunResult
    runner.info().describe()      # one line for /run --info
    await runner.aclose()         # cancels runs in progress; each deletes its kernel

``run`` raises a KernelError with ``user_message`` when it refuses (KaggleDisabled, Busy,
GpuQueueFull, GpuBudgetExceeded, KaggleUnavailable, KaggleRejected, ServiceClosed).

Modules: ``settings`` (KaggleSettings, light), ``client`` (the REST calls and where their shape
comes from), ``script`` (the wrapper pushed and the parsing of its outputs), ``ledger`` (SQLite:
slugs, GPU seconds; migrations 220-239), ``runner`` (KaggleRunner). Exports load lazily so the
migration registry can import ``ledger`` without httpx/tenacity.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "KaggleSettings": "bot.kernels.kaggle.settings",
    "KaggleRunner": "bot.kernels.kaggle.runner",
    "KaggleInfo": "bot.kernels.kaggle.runner",
    "RunnerStats": "bot.kernels.kaggle.runner",
}

if TYPE_CHECKING:
    from bot.kernels.kaggle.runner import KaggleInfo, KaggleRunner, RunnerStats
    from bot.kernels.kaggle.settings import KaggleSettings

__all__ = ["KaggleInfo", "KaggleRunner", "KaggleSettings", "RunnerStats"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bot.kernels.kaggle' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
