"""Small helpers the handlers share: resolving platform names, did-you-mean."""

from __future__ import annotations

from typing import Any

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.parse import words
from knowledge.schema import Platform


def resolve_platform(ctx: Context, name: str, extra: tuple[str, ...] = ()) -> Platform:
    platform = ctx.knowledge.resolve(name)
    if platform is None:
        raise UserError(
            f"I don't know a platform called “{name[:60]}”. /platforms lists them.",
            suggestions=tuple(ctx.knowledge.suggest(name, extra)),
        )
    return platform


def split_platform(ctx: Context, args: str) -> tuple[Platform | None, list[str]]:
    """Find a platform name (up to three words, e.g. "google colab") anywhere in the
    arguments; return it and the remaining words."""
    ws = words(args)
    for size in (3, 2, 1):
        for i in range(len(ws) - size + 1):
            p = ctx.knowledge.resolve(" ".join(ws[i : i + size]))
            if p is not None:
                return p, ws[:i] + ws[i + size :]
    return None, ws


def age(days: int) -> str:
    if days < 1:
        return "today"
    if days < 60:
        return f"{days} days ago"
    return f"{days // 30} months ago"


def require(ctx: Context, name: str, refusal: str) -> Any:
    """The named service, or a user-facing refusal when this bot has none configured."""
    service = ctx.service(name)
    if service is None:
        raise UserError(refusal)
    return service


def currently_down(ctx: Context) -> set[str]:
    """Platforms the outage monitor currently sees down (empty without a monitor)."""
    monitor = ctx.service("monitor")
    if monitor is None:
        return set()
    return {pid for pid, status in monitor.current_statuses().items() if status == "down"}
