"""Factories of the services behind the handlers, wired from settings and the config file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from knowledge.loader import KnowledgeError
from knowledge.ranking import rank

if TYPE_CHECKING:
    from bot.core.context import Context
    from bot.kernels import KernelService
    from bot.monitor import MonitorService


def monitor_settings(ctx: Context) -> object:
    from bot.monitor import MonitorSettings

    raw = dict(ctx.knowledge.config.get("monitor", {}))
    try:
        return MonitorSettings(**raw)
    except (ValidationError, TypeError) as exc:
        where = ctx.settings.config or "config"
        raise KnowledgeError(f"{where}: monitor: {exc}") from exc


def build_monitor(ctx: Context) -> MonitorService:
    from bot.monitor import MonitorService

    kb = ctx.knowledge

    def best_alternative(pid: str) -> str | None:
        picks = rank(kb.alive(), exclude=pid, limit=1)
        return picks[0].platform.name if picks else None

    return MonitorService(
        ctx.store,
        kb.platforms,
        monitor_settings(ctx),
        alternative=best_alternative,  # type: ignore[arg-type]
    )


def build_kernels(ctx: Context) -> KernelService | None:
    s = ctx.settings
    if not s.run_enabled:
        return None
    from bot.kernels import KernelLimits, KernelService

    limits = KernelLimits(
        wall_s=s.run_wall_s,
        memory_mb=s.run_memory_mb,
        max_processes=s.run_max_processes,
        tmp_mb=s.run_tmp_mb,
        output_bytes=s.run_output_bytes,
        max_images=s.run_max_images,
        pool_size=s.run_pool_size,
        max_sessions=max(s.run_max_sessions, KernelLimits().max_running),
        runs_per_minute=s.run_per_minute,
        idle_timeout_s=s.run_idle_timeout_s,
        max_age_s=s.run_max_age_s,
    )
    # Never visible inside a sandbox: the database, the config, .env and the project's code.
    # (The project directory itself may be the parent of the bound virtualenv; its contents
    # other than the virtualenv are not bound, and these paths are checked at start.)
    project = Path(__file__).resolve().parents[1]
    protected = [Path(s.db).resolve(), Path(".env").resolve(), project / ".env"]
    protected += [project / name for name in ("bot", "handlers", "knowledge", "pyproject.toml")]
    if s.config is not None:
        protected.append(Path(s.config).resolve())
    if not Path(sys.prefix).resolve().is_relative_to(Path.cwd()):
        protected.append(Path.cwd())
    return KernelService(
        limits, allow_unsandboxed=s.run_unsandboxed_i_trust_every_user, protected_paths=protected
    )


FACTORIES = {"monitor": build_monitor, "kernels": build_kernels}
