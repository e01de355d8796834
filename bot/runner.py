"""Runs the configured adapters and the background services in one event loop.

No library's blocking runner is used (``run_polling``, ``Client.run``): each adapter starts its
own tasks, and SIGTERM/SIGINT set one stop event. Heroku-style hosts allow 30 s between
SIGTERM and SIGKILL; adapters get ``STOP_TIMEOUT_S`` to finish in-flight work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from bot.adapters.base import Adapter
from bot.core.app import Core

log = logging.getLogger("nbhelp.runner")
STOP_TIMEOUT_S = 10.0


async def _call(obj: Any, name: str) -> None:
    fn = getattr(obj, name, None)
    if fn is not None:
        await fn()


async def serve(core: Core, adapters: Sequence[Adapter], stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started: list[Adapter] = []
    try:
        for service in core.ctx.build_all().values():
            await _call(service, "start")
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
            log.info("adapter %s started", adapter.name)
        background = [asyncio.create_task(t) for t in core.background_tasks(adapters, stop)]
        await stop.wait()
        log.info("stopping")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    finally:
        for adapter in reversed(started):
            try:
                await asyncio.wait_for(adapter.stop(), STOP_TIMEOUT_S)
            except Exception:
                log.exception("adapter %s did not stop cleanly", adapter.name)
        for service in core.ctx.services.values():
            with contextlib.suppress(Exception):
                await _call(service, "aclose")
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
