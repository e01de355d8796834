"""The composition root: settings → store, knowledge, services, handlers → one :class:`Core`.

The only module that knows every part. The core imports none of this; adapters receive the
core it builds. Services are built on first use from the factories here, so
``python -m bot ask "/help"`` never pays for the outage monitor or the kernel pool.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import bot.migrations
from bot import metrics
from bot.core.app import Core
from bot.core.context import Context
from bot.core.contract import ChatMoved, ChatRemoved
from bot.core.registry import Registry
from bot.settings import Settings
from bot.store import Store
from handlers import COMMANDS
from knowledge.loader import load
from knowledge.ranking import rank

if TYPE_CHECKING:
    from bot.kernels.router import Kernels
    from bot.monitor.service import MonitorService

PROJECT = Path(__file__).resolve().parents[1]


def build_core(settings: Settings, registry: Registry | None = None) -> Core:
    """Load and validate the knowledge base, open and migrate the store, wire the services.

    Raises ``KnowledgeError`` or ``StoreError`` with a one-line reason."""
    kb = load(settings.config)
    store = Store(settings.db, busy_timeout_s=settings.startup.db_busy_timeout_s)
    try:
        store.migrate(bot.migrations.steps())
    except BaseException:
        store.close()
        raise
    registry = registry if registry is not None else Registry.of(COMMANDS)
    ctx = Context(settings=settings, store=store, knowledge=kb, commands=registry)
    ctx.factories.update({"monitor": build_monitor, "kernels": build_kernels})
    core = Core(ctx, registry)
    _listen(core)
    return core


def _listen(core: Core) -> None:
    """Chat events reach the services that care about them."""

    async def moved(event: ChatMoved) -> None:
        monitor = _monitor(core.ctx)
        if monitor is not None:
            await monitor.chat_moved(event.platform, event.old_chat_id, event.new_chat_id)

    async def removed(event: ChatRemoved) -> None:
        monitor = _monitor(core.ctx)
        if monitor is not None:
            await monitor.chat_gone(event.platform, event.chat_id, event.reason)

    core.on(ChatMoved, moved)
    core.on(ChatRemoved, removed)


def _monitor(ctx: Context) -> MonitorService | None:
    return cast("MonitorService | None", ctx.service("monitor"))


def build_monitor(ctx: Context) -> MonitorService:
    from bot.monitor.service import MonitorService

    kb = ctx.knowledge

    def best_alternative(pid: str) -> str | None:
        picks = rank(kb.alive(), exclude=pid, limit=1)
        return picks[0].platform.name if picks else None

    return MonitorService(
        ctx.store, kb.platforms, ctx.settings.monitor, alternative=best_alternative
    )


def protected_paths(settings: Settings) -> list[Path]:
    """What a sandbox must never see: the database, the config, .env and the project's code.

    (The project directory may be the parent of the bound virtualenv; its contents other than
    the virtualenv are not bound, and these paths are checked at start.)"""
    protected = [Path(settings.db).resolve(), Path(".env").resolve(), PROJECT / ".env"]
    protected += [PROJECT / name for name in ("bot", "handlers", "knowledge", "pyproject.toml")]
    if settings.config is not None:
        protected.append(Path(settings.config).resolve())
    if not Path(sys.prefix).resolve().is_relative_to(Path.cwd()):
        protected.append(Path.cwd())
    return protected


def build_kernels(ctx: Context) -> Kernels | None:
    """Every configured /run backend behind one router (bot/kernels/router.py)."""
    settings = ctx.settings
    run = settings.run
    if not run.enabled:
        return None
    from bot.kernels.gateway.backend import GatewayBackend
    from bot.kernels.kaggle.runner import KaggleRunner
    from bot.kernels.router import Kernels, Target
    from bot.kernels.service import KernelService

    limits = run.limits()
    targets: dict[str, Target] = {}

    def local() -> Target:
        if "local" not in targets:
            service = KernelService(
                limits,
                allow_unsandboxed=run.unsandboxed_i_trust_every_user,
                run_dir=run.run_dir,
                protected_paths=protected_paths(settings),
                fence=run.fence,
            )
            targets["local"] = Target("local", service=service)
        return targets["local"]

    def gateway(name: str) -> Target:
        key = f"gateway:{name}"
        if key not in targets:
            gw = settings.gateways[name].model_copy(update={"name": name})
            gw_limits = gw.kernel_limits(limits)
            backend = GatewayBackend(gw, gw_limits)
            targets[key] = Target(key, service=KernelService(gw_limits, backend=backend))
        return targets[key]

    def target(name: str) -> Target:
        if name == "local":
            return local()
        if name == "kaggle":
            if "kaggle" not in targets:
                targets["kaggle"] = Target(
                    "kaggle", kaggle=KaggleRunner(settings.kaggle, ctx.store)
                )
            return targets["kaggle"]
        return gateway(name.removeprefix("gateway:"))

    plain = target(run.backend)
    if run.gpu_route is not None:
        route = [target(name) for name in run.gpu_route]
    else:
        route = [gateway(n) for n, gw in settings.gateways.items() if gw.gpu]
        if settings.kaggle.enabled:
            route.append(target("kaggle"))
        route.append(local())  # used only when this host has a GPU
    kernels = Kernels(plain, route)

    def in_use() -> float:
        info = kernels.info_now()
        return float(info.sessions + info.warm_kernels)

    metrics.current().watch_kernels(in_use, lambda: float(kernels.info_now().queued))
    return kernels
