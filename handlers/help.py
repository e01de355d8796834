"""/help and /start: rendered from the command registry."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import Block, Inbound, Reply, bold, bullets, code, codes, para
from bot.core.parse import words


async def help(ctx: Context, msg: Inbound) -> Reply:
    ws = words(msg.args)
    if ws:
        name = ws[0].lstrip("/")
        cmd = ctx.commands.get(name)
        if cmd is None:
            raise UserError(
                f"There is no command /{name[:40]}.", suggestions=ctx.commands.suggest(name)
            )
        blocks: list[Block] = [para(bold(cmd.usage or f"/{cmd.name}")), para(cmd.description)]
        if cmd.options:
            blocks.append(bullets(*((code(o.name), " — ", o.description) for o in cmd.options)))
        if cmd.examples:
            blocks.append(para("Examples: ", *codes(cmd.examples)))
        if cmd.admin_in_groups:
            blocks.append(para("In groups only chat admins can use it."))
        return Reply.of(*blocks)
    items = [(code(c.usage or f"/{c.name}"), " — ", c.description) for c in ctx.commands.visible()]
    return Reply.of(
        para(bold("nbhelp"), " — help when your cloud notebook fails."),
        bullets(*items),
        para(
            "Try ",
            code("/status colab"),
            " or ",
            code("/alternatives gpu"),
            ". ",
            code("/help status"),
            " explains one command.",
        ),
    )


async def start(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(
        para(
            "Hi! I help when a cloud notebook (Colab, Kaggle, Binder, …) lets you down: "
            "is it down for everyone, where to go instead, and how to move your notebook."
        ),
        bullets(
            (code("/status colab"), " — is it down, or just me?"),
            (code("/alternatives gpu"), " — where to go instead, ranked"),
            (code("/tips <error text>"), " — what an error message means"),
        ),
        para(code("/help"), " lists every command."),
    )
