"""Factories of the services behind the handlers, wired from settings and the config file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from knowledge.loader import KnowledgeError
from knowledge.ranking import rank

if TYPE_CHECKING:
    from bot.core.context import Context
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


FACTORIES = {"monitor": build_monitor}
