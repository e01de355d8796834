"""What the CLI and the runner call: build the web server from a :class:`Core`, run it.

``python -m bot web`` (the Procfile's ``web`` process) is :func:`serve_web`: the web server on
``$PORT``, the services (the monitor's sweeps) and any chat adapters given, in one event loop
until SIGTERM. :func:`build_web` gives the runner a :class:`WebServer` to start beside the chat
adapters, with readiness wired to them and to the kernel pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot.web.app import WebServer
from bot.web.data import StoreStatusData
from bot.web.health import Check, Readiness, adapter_check
from bot.web.settings import WebSettings

if TYPE_CHECKING:
    from bot.core.app import Core
    from bot.metrics import Metrics

log = logging.getLogger("nbhelp.web")


def kernels_check(core: Core) -> Callable[[], Check] | None:
    """The kernel pool's state for ``/readyz``; None when ``/run`` is off.

    Optional (``required=False``): a host without a working sandbox still serves every other
    command, so it stays ready while ``/readyz`` says why ``/run`` is refused.
    """
    if not core.ctx.settings.run_enabled:
        return None

    def check() -> Check:
        k = core.ctx.services.get("kernels")
        if k is None:
            return Check(False, "not started", required=False)
        info = k.info()
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
    adapters: Sequence[Any] = (),
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
) -> WebServer:
    """A :class:`WebServer` reading ``core``'s store and knowledge base."""
    from bot.services import monitor_settings

    ctx = core.ctx
    data = StoreStatusData(
        ctx.store,
        ctx.knowledge.platforms,
        monitor_settings(ctx),  # type: ignore[arg-type]
        clock=clock,
        days=settings.history_days,
        incidents_limit=settings.incidents_limit,
    )

    def adapter_states() -> Mapping[str, Check]:
        return {a.name: adapter_check(a) for a in adapters}

    monitor = ctx.service("monitor")
    readiness = Readiness(
        data,
        adapters=adapter_states if adapters else None,
        kernels=kernels_check(core),
        monitor=monitor is not None and monitor.settings.background,
        sweep_max_age_s=settings.ready_sweep_max_age_s,
        clock=clock,
    )
    return WebServer(settings, data, metrics=metrics, readiness=readiness, clock=clock)


async def serve_web(
    core: Core,
    settings: WebSettings,
    adapters: Sequence[Any] = (),
    stop: asyncio.Event | None = None,
) -> int:
    """Run the web server, the services and ``adapters`` until SIGTERM/SIGINT (or ``stop``)."""
    from bot.runner import serve

    server = build_web(core, settings, adapters=adapters)
    await server.start()
    try:
        await serve(core, adapters, stop)
    except Exception:
        log.exception("nbhelp stopped: the web server, an adapter or a service failed")
        return 1
    finally:
        await server.stop()
    return 0


def settings_from_env(environ: Mapping[str, str]) -> WebSettings:
    """Until the root settings hold a ``web`` section: ``NBHELP_WEB_PORT``, else ``$PORT``
    (Heroku-like hosts), else 8080; ``NBHELP_WEB_HOST``; ``NBHELP_WEB_PUBLIC_URL``."""
    port = environ.get("NBHELP_WEB_PORT") or environ.get("PORT") or "8080"
    raw: dict[str, Any] = {"enabled": True, "port": port}
    if environ.get("NBHELP_WEB_HOST"):
        raw["host"] = environ["NBHELP_WEB_HOST"]
    if environ.get("NBHELP_WEB_PUBLIC_URL"):
        raw["public_url"] = environ["NBHELP_WEB_PUBLIC_URL"]
    return WebSettings.model_validate(raw)


def chat_adapters(core: Core) -> list[Any]:
    """The chat adapters whose tokens are set (the same rule as ``python -m bot``)."""
    s = core.ctx.settings
    out: list[Any] = []
    if s.telegram_token:
        from bot.adapters.telegram import TelegramAdapter

        out.append(TelegramAdapter(core, s))
    if s.discord_token:
        from bot.adapters.discord import DiscordAdapter

        out.append(DiscordAdapter(core, s))
    return out


def main() -> int:
    """``python -m bot.web``: the Procfile's ``web`` process until the CLI has ``web``."""
    import os

    from pydantic import ValidationError

    from bot import logs
    from bot.core.app import Core
    from bot.settings import Settings, secret_values
    from knowledge.loader import KnowledgeError

    try:
        settings = Settings()
        web_settings = settings_from_env(os.environ)
    except ValidationError as exc:
        raise SystemExit(f"nbhelp: invalid settings: {exc}") from None
    logs.setup(settings.log_level or "INFO", secret_values(settings), settings.log_file)
    try:
        core = Core.create(settings)
    except KnowledgeError as exc:
        raise SystemExit(f"nbhelp: cannot start: {exc}") from None
    try:
        return asyncio.run(serve_web(core, web_settings, chat_adapters(core)))
    finally:
        core.close()
