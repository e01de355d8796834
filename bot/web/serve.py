"""What the CLI calls: build the web server from a :class:`Core`, run it beside the bot.

``python -m bot web`` (the Procfile's ``web`` process) and a bot with chat adapters run
:func:`serve_web`: the web server on ``NBHELP_WEB__PORT`` / ``$PORT``, the services (the
monitor's sweeps) and the chat adapters, in one event loop until SIGTERM. :func:`build_web`
wires readiness to the adapters and to the kernel pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from bot.web.app import WebServer
from bot.web.data import StoreStatusData
from bot.web.health import Check, Readiness, adapter_check
from bot.web.settings import WebSettings

if TYPE_CHECKING:
    from bot.core.app import Core
    from bot.core.contract import ChatAdapter
    from bot.metrics import Metrics

log = logging.getLogger("nbhelp.web")


def kernels_check(core: Core) -> Callable[[], Check] | None:
    """The kernel pool's state for ``/readyz``; None when ``/run`` is off.

    Optional (``required=False``): a host without a working sandbox still serves every other
    command, so it stays ready while ``/readyz`` says why ``/run`` is refused.
    """
    if not core.ctx.settings.run.enabled:
        return None

    def check() -> Check:
        info_now = getattr(core.ctx.services.get("kernels"), "info_now", None)
        if info_now is None:
            return Check(False, "not started", required=False)
        info = info_now()
        if not info.available:
            return Check(False, info.unavailable_reason or "unavailable", required=False)
        return Check(
            True,
            f"{info.backend}: {info.running} running, {info.queued} queued, "
            f"{info.warm_kernels} warm",
            required=False,
        )

    return check


def build_web(
    core: Core,
    settings: WebSettings,
    *,
    adapters: Sequence[ChatAdapter] = (),
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
) -> WebServer:
    """A :class:`WebServer` reading ``core``'s store and knowledge base."""
    ctx = core.ctx
    data = StoreStatusData(
        ctx.store,
        ctx.knowledge.platforms,
        ctx.settings.monitor,
        clock=clock,
        days=settings.history_days,
        incidents_limit=settings.incidents_limit,
    )

    def adapter_states() -> Mapping[str, Check]:
        return {a.name: adapter_check(a) for a in adapters}

    readiness = Readiness(
        data,
        adapters=adapter_states if adapters else None,
        kernels=kernels_check(core),
        monitor=ctx.settings.monitor.background,
        sweep_max_age_s=settings.ready_sweep_max_age_s,
        clock=clock,
    )
    return WebServer(settings, data, metrics=metrics, readiness=readiness, clock=clock)


async def serve_web(
    core: Core,
    settings: WebSettings,
    adapters: Sequence[ChatAdapter] = (),
    stop: asyncio.Event | None = None,
) -> int:
    """Run the web server, the services and ``adapters`` until SIGTERM/SIGINT (or ``stop``).

    Returns the runner's exit status (0 on a requested stop)."""
    from bot.runner import serve

    server = build_web(core, settings, adapters=adapters)
    for adapter in adapters:  # e.g. Telegram's webhook: one server for everything
        routes = getattr(adapter, "web_routes", None)
        if routes is not None:
            server.add_routes(routes())
    await server.start()
    try:
        outcome = await serve(core, adapters, stop)
    finally:
        await server.stop()
    return outcome.code
