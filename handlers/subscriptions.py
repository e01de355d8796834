"""/subscribe, /unsubscribe, /subscriptions: outage and recovery alerts for this chat.
In groups only chat admins may (un)subscribe (the registry marks them admin_in_groups)."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import Inbound, Reply, code, para
from bot.core.parse import words
from handlers.common import need_monitor, resolve_platform, split_platform


def _targets(ctx: Context, args: str) -> list[str] | None:
    """Platform ids named in the arguments ("colab, google colab kaggle"), or None for all."""
    ws = words(args.replace(",", " "))
    if not ws or ws == ["all"]:
        return None
    ids: list[str] = []
    while ws:
        platform, rest = split_platform(ctx, " ".join(ws))
        if platform is None or len(rest) == len(ws):
            resolve_platform(ctx, ws[0], ("all",))  # raises with did-you-mean
            break
        if not platform.alive:
            raise UserError(
                f"{platform.name} was retired on {platform.lifecycle.retired_on}: there is nothing to watch."
            )
        if not platform.status_sources:
            raise UserError(f"{platform.name} has nothing server-side to watch.")
        ids.append(platform.id)
        ws = rest
    return list(dict.fromkeys(ids))


def _describe(ctx: Context, sub: object) -> str:
    if getattr(sub, "all", False):
        return "all platforms"
    ps = sorted(getattr(sub, "platforms", ()))
    return ", ".join(ctx.knowledge.label(p) for p in ps) if ps else "nothing"


NO_MONITOR = "Alerts are not available: the outage monitor is not configured."


async def subscribe(ctx: Context, msg: Inbound) -> Reply:
    monitor = need_monitor(ctx, NO_MONITOR)
    targets = _targets(ctx, msg.args)
    sub = await monitor.subscribe(msg.platform, msg.chat_id, targets)
    blocks = [para(f"This chat now gets outage and recovery alerts for {_describe(ctx, sub)}.")]
    if targets is None and not msg.args.strip():  # nothing named: say what "everything" means
        blocks.append(
            para(
                "That includes platforms added later. To get fewer, ",
                code("/unsubscribe all"),
                " then e.g. ",
                code("/subscribe colab kaggle"),
                ".",
            )
        )
    blocks.append(para(code("/unsubscribe"), " stops them."))
    return Reply.of(*blocks, tone="ok")


async def unsubscribe(ctx: Context, msg: Inbound) -> Reply:
    monitor = need_monitor(ctx, NO_MONITOR)
    sub = await monitor.unsubscribe(msg.platform, msg.chat_id, _targets(ctx, msg.args))
    if sub.empty:
        return Reply.of(para("This chat gets no alerts now."))
    return Reply.of(para(f"This chat still gets alerts for {_describe(ctx, sub)}."))


async def subscriptions(ctx: Context, msg: Inbound) -> Reply:
    monitor = need_monitor(ctx, NO_MONITOR)
    sub = await monitor.subscriptions(msg.platform, msg.chat_id)
    if sub.empty:
        return Reply.of(
            para(
                "This chat gets no alerts. ",
                code("/subscribe colab kaggle"),
                " or ",
                code("/subscribe all"),
                ".",
            )
        )
    return Reply.of(para(f"This chat gets outage and recovery alerts for {_describe(ctx, sub)}."))
