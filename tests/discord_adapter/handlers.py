"""Test-only command handlers (named by import path in a test registry)."""

from __future__ import annotations

import asyncio
import re

from bot.core.context import Context
from bot.core.models import Attachment, Image, Inbound, Reply, codeblock, para

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
_FENCE = re.compile(r"```[a-zA-Z0-9]*\n?(.*?)```", re.DOTALL)


def code_of(msg: Inbound) -> str:
    if msg.args.strip():
        return msg.args
    text = msg.replied_text or ""
    m = _FENCE.search(text)
    return (m.group(1) if m else text).strip()


async def run(ctx: Context, msg: Inbound) -> Reply:
    """A stand-in /run: echoes the code as output; ``plot`` in the code returns an image."""
    code = code_of(msg)
    await asyncio.sleep(0.2)  # a kernel round trip
    images = (Image(PNG, "plot.png", "a plot"),) if "plot" in code else ()
    return Reply.of(
        para(f"ran for {msg.display_name}:"),
        codeblock(code or "(no code)", "python"),
        images=images,
    )


async def whoami(ctx: Context, msg: Inbound) -> Reply:
    fields = (
        f"platform={msg.platform}\nchat_id={msg.chat_id}\nuser_id={msg.user_id}\n"
        f"display_name={msg.display_name}\nprivate={msg.is_private}\nadmin={msg.is_admin}\n"
        f"args={msg.args}"
    )
    return Reply.of(codeblock(fields))


async def echo(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(para(msg.args))


async def echo_code(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(codeblock(msg.args))


async def slow(ctx: Context, msg: Inbound) -> Reply:
    await asyncio.sleep(float(msg.args or 1.5))
    return Reply.of(para("slow answer"))


async def subscribe(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(para(f"subscribed {msg.chat_id} to {msg.args or 'all'}"), tone="ok")


async def files(ctx: Context, msg: Inbound) -> Reply:
    """``/files <bytes>``: one image of that size and a small text file, after a short await."""
    await asyncio.sleep(0.05)
    size = int(msg.args or 100)
    return Reply.of(
        para("here are your files"),
        images=(Image(PNG[:8] + bytes(max(0, size - 8)), "big plot.png"),),
        files=(Attachment(b"a,b\n1,2\n", "data.csv", "the data"),),
    )


async def status_card(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(
        para("Colab is down for everyone: 12 reports in 10 min, official feed agrees."),
        title="Google Colab — down",
        tone="error",
        images=(Image(PNG, "uptime.png"),),
    )


class Hold:
    """Holds ``/held`` until a test lets it go (made fresh in each test's event loop)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = asyncio.Event()


HOLD = Hold()


async def held(ctx: Context, msg: Inbound) -> Reply:
    HOLD.started.set()
    await HOLD.go.wait()
    return Reply.of(para(f"held answer for {msg.display_name}"))
