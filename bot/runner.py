"""Runs the chat adapters and the background services in one event loop.

No library's blocking runner is used (``run_polling``, ``Client.run``): each adapter starts its
own tasks, and SIGTERM/SIGINT set one stop event. Each adapter starts under its own supervisor:
a platform that cannot be reached is retried with backoff (one log line per attempt) while the
others serve; a refusal that retrying cannot fix (a rejected token) stops only that adapter.
The database file is watched: deleted or replaced under the bot, the bot stops rather than
write to a file nobody will read again. Shutdown (signal, error, or cancellation) stops every
adapter and closes every service, the kernel pool included, within a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.core.app import Core
from bot.core.contract import AdapterRefused, ChatAdapter
from bot.retry import Backoff
from bot.store import StoreGone

log = logging.getLogger("nbhelp.runner")
CLOSE_TIMEOUT_S = 15.0


@dataclass
class Outcome:
    """How a run ended: 0 on a requested stop, 1 when the bot had to stop by itself."""

    code: int = 0
    reasons: list[str] = field(default_factory=list)


async def serve(
    core: Core, adapters: Sequence[ChatAdapter], stop: asyncio.Event | None = None
) -> Outcome:
    stop = stop or asyncio.Event()
    outcome = Outcome()
    settings = core.ctx.settings.startup
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started: list[ChatAdapter] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for name, service in core.ctx.build_all().items():
            starter = getattr(service, "start", None)
            if starter is not None:
                await starter()
                log.debug("service %s started", name)
        tasks.append(asyncio.create_task(_watch_store(core, stop, outcome, settings.db_watch_s)))
        refused: list[str] = []
        for adapter in adapters:
            tasks.append(
                asyncio.create_task(
                    _supervise(core, adapter, started, refused, len(adapters), stop, outcome),
                    name=f"nbhelp-start-{adapter.name}",
                )
            )
        await stop.wait()
        log.info("stopping")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for adapter in reversed(started):
            try:
                await asyncio.wait_for(adapter.stop(), settings.stop_timeout_s)
            except Exception:
                log.exception("adapter %s did not stop cleanly", adapter.name)
        await close_services(core)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return outcome


async def _supervise(
    core: Core,
    adapter: ChatAdapter,
    started: list[ChatAdapter],
    refused: list[str],
    total: int,
    stop: asyncio.Event,
    outcome: Outcome,
) -> None:
    """Start one adapter, retrying with backoff; then deliver its alerts until cancelled."""
    s = core.ctx.settings.startup
    backoff = Backoff(s.adapter_retry_initial_s, s.adapter_retry_max_s)
    while True:
        try:
            await adapter.start()
            break
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await adapter.stop()
            raise
        except AdapterRefused as exc:
            log.error("%s will not start: %s", adapter.name, exc)
            refused.append(adapter.name)
            outcome.reasons.append(f"{adapter.name}: {exc}")
            if not started and len(refused) == total:
                outcome.code = 1
                stop.set()
            return
        except Exception as exc:
            delay = backoff.next_delay()
            log.warning(
                "%s cannot start (attempt %d): %s; retrying in %.0f s",
                adapter.name,
                backoff.failures,
                _one_line(exc),
                delay,
            )
            await asyncio.sleep(delay)
    started.append(adapter)
    retried = f" after {backoff.failures} failed attempt(s)" if backoff.failures else ""
    log.info("%s started%s", adapter.name, retried)
    delivery = core.delivery(adapter)
    if delivery is not None:
        await delivery


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


async def _watch_store(core: Core, stop: asyncio.Event, outcome: Outcome, every_s: float) -> None:
    store = core.ctx.store
    while not stop.is_set():
        try:
            await asyncio.to_thread(store.check_file)
        except StoreGone as exc:
            log.critical(
                "%s. Stopping now so nothing is written to a file that is gone; restore the "
                "database from a backup (docs/deploy.md) and start the bot again.",
                exc,
            )
            outcome.code = 1
            outcome.reasons.append(str(exc))
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def close_services(core: Core, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close every service (the kernel pool reaps its kernels) within ``timeout_s``; past it,
    kill what is left of the kernels at once."""
    try:
        await asyncio.wait_for(asyncio.shield(core.aclose()), timeout_s)
    except TimeoutError:
        log.error("services did not close within %.0f s; killing kernels now", timeout_s)
        for service in core.ctx.services.values():
            killer = getattr(service, "kill_now", None)
            if killer is not None:
                killer()
