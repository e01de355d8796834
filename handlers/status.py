"""/status [platform]: retired platforms answer from the knowledge base; live status needs the
outage monitor, and until it runs the bot says so instead of guessing."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.models import Inbound, Reply, code, para
from handlers.common import resolve_platform
from handlers.platforms import retired_blocks


async def status(ctx: Context, msg: Inbound) -> Reply:
    platform = resolve_platform(ctx, msg.args) if msg.args.strip() else None
    if platform is not None and not platform.alive:
        return Reply.of(*retired_blocks(ctx, platform), tone="warn")
    name = platform.name if platform else "the platforms"
    return Reply.of(
        para(f"Live status of {name} is not available yet: the outage monitor is not running."),
        para(
            "Meanwhile ",
            code(f"/alternatives {platform.id if platform else ''}".strip()),
            " shows where to go.",
        ),
        tone="warn",
    )
