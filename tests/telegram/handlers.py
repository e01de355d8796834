"""Test-only command handlers (named by import path in test registries)."""

from __future__ import annotations

import asyncio
import struct
import zlib

from bot.core.context import Context
from bot.core.models import Attachment, Image, Inbound, Reply, codeblock, para


def png(width: int = 2, height: int = 2, seed: int = 0) -> bytes:
    """A small valid PNG (grey pixels; ``seed`` changes the bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + bytes([seed % 256]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class Gate:
    """Lets a test hold a handler mid-run and see whether it finished or was cancelled."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.finished = False


GATE = Gate()


async def echo(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(para("echo: ", msg.args or "-"))


async def replied(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(para("replied: ", msg.replied_text or "(nothing)"))


async def admin_only(ctx: Context, msg: Inbound) -> Reply:
    return Reply.of(para("admin thing done"))


async def long(ctx: Context, msg: Inbound) -> Reply:
    n = int(msg.args or "400")
    lines = "\n".join(f"line {i:05d} <&> value" for i in range(n))
    return Reply.of(para("Output follows."), codeblock(lines, "python"), para("Done."))


async def photo(ctx: Context, msg: Inbound) -> Reply:
    n = int(msg.args or "1")
    caption = "x" * 2000 if n == 1 else ""
    images = tuple(Image(png(seed=i), f"plot{i}.png", caption or f"plot {i}") for i in range(n))
    return Reply(blocks=(para(f"{n} plot(s)"),), images=images)


async def document(ctx: Context, msg: Inbound) -> Reply:
    data = ("a,b\n" + "1,2\n" * 1000).encode()
    return Reply(blocks=(para("the table"),), files=(Attachment(data, "table.csv", "a table"),))


async def slow(ctx: Context, msg: Inbound) -> Reply:
    GATE.started.set()
    try:
        await GATE.release.wait()
    except asyncio.CancelledError:
        GATE.cancelled = True
        raise
    GATE.finished = True
    return Reply.of(para("slow done"))


class Crowd:
    """Holds /work runs until a test lets them go (a workshop's runs queueing)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, *, hold: bool = False) -> None:
        self.go = asyncio.Event()
        if not hold:
            self.go.set()
        self.started = 0


CROWD = Crowd()


async def work(ctx: Context, msg: Inbound) -> Reply:
    """A stand-in /run (lane "run"): waits for the crowd's gate, then answers with the
    person's own output (and a plot for ``/work plot``)."""
    await CROWD.go.wait()  # queued
    if msg.on_started is not None:
        await msg.on_started()
    CROWD.started += 1
    images = (Image(png(16, 12, seed=len(msg.user_id)), "plot.png"),) if "plot" in msg.args else ()
    return Reply(blocks=(codeblock(f"out-{msg.user_id}: {msg.args}"),), images=images)
