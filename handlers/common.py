"""Small helpers the handlers share: resolving platform names, did-you-mean."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.parse import words
from bot.core.ports import KernelsPort, MonitorPort
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


def need_monitor(ctx: Context, refusal: str) -> MonitorPort:
    """The outage monitor, or a user-facing refusal when this bot has none configured."""
    monitor = ctx.monitor()
    if monitor is None:
        raise UserError(refusal)
    return monitor


def need_kernels(ctx: Context, refusal: str) -> KernelsPort:
    """The kernel pool, or a user-facing refusal when this bot has none configured."""
    kernels = ctx.kernels()
    if kernels is None:
        raise UserError(refusal)
    return kernels


async def currently_down(ctx: Context) -> set[str]:
    """Platforms the outage monitor currently sees down (empty without a monitor)."""
    monitor = ctx.monitor()
    if monitor is None:
        return set()
    statuses = await monitor.current_statuses()
    return {pid for pid, status in statuses.items() if status == "down"}
