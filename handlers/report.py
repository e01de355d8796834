"""/report <platform> [what you see]: a community report, or the explanation of a known
message that is not an outage (recognised by the same matcher as /tips)."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import Block, Inbound, Reply, code, para
from bot.text import duration
from handlers.common import need_monitor, split_platform
from handlers.tips import entry_blocks
from knowledge.match import match


async def report(ctx: Context, msg: Inbound) -> Reply:
    if not msg.args.strip():
        raise UserError("Say which platform fails for you, e.g. /report colab cannot connect.")
    platform, _ = split_platform(ctx, msg.args)
    if platform is None:
        first = msg.args.split()[0]
        raise UserError(
            f"I don't know a platform called “{first[:40]}”. /platforms lists them.",
            suggestions=tuple(ctx.knowledge.suggest(first)),
        )
    if not platform.alive:
        raise UserError(
            f"{platform.name} was retired on {platform.lifecycle.retired_on}; see /alternatives."
        )
    monitor = need_monitor(ctx, "Reports are not available: the outage monitor is not configured.")
    # Known wording (the same matcher as /tips) that applies to this platform: explain it.
    # A message that is not an outage is recorded but not counted.
    hit = match(ctx.knowledge, msg.args, platform=platform.id).known_for(platform.id)
    known = hit.entry if hit is not None else None
    if known is not None and getattr(known, "not_an_outage", True):
        await monitor.add_report(
            platform.id,
            adapter=msg.platform,
            chat_id=msg.chat_id,
            user_id=msg.user_id,
            text=msg.args,
            counts=False,
        )
        return Reply.of(*entry_blocks(known, ctx.knowledge), tone="warn")
    outcome = await monitor.add_report(
        platform.id, adapter=msg.platform, chat_id=msg.chat_id, user_id=msg.user_id, text=msg.args
    )
    blocks: list[Block]
    if outcome.reason == "duplicate":
        blocks = [
            para(
                f"You already reported {platform.name} recently; one report per person counts. Try again in {duration(outcome.retry_after_s or 0)}."
            )
        ]
    elif outcome.reason == "limit":
        blocks = [
            para(
                f"That is a lot of reports from you; try again in {duration(outcome.retry_after_s or 0)}."
            )
        ]
    else:
        s = outcome.summary
        level = {
            "detected": "Problems detected by the community.",
            "possible": "Possible problems.",
        }.get(s.level, "")
        others = (
            f"No one else has reported {platform.name} in the last "
            f"{duration(s.window_s)}; {s.usual()}."
            if s.people <= 1
            else s.line + "."
        )
        blocks = [
            para(f"Thanks — your report on {platform.name} is counted. {level}".strip()),
            para(others),
        ]
    if known is not None:  # known wording that may also mean an outage: counted, and explained
        blocks += entry_blocks(known, ctx.knowledge)
    blocks.append(
        para(
            code(f"/status {platform.id}"),
            " shows the evidence; ",
            code(f"/alternatives {platform.id}"),
            " where to go meanwhile.",
        )
    )
    return Reply.of(*blocks)
