"""/run <code> and /reset: the caller's own notebook-like kernel session.

Code comes inline, in a fenced block, or from the message the command replies to. Output comes
back in execution order: text (stdout, stderr, values, tracebacks) as code blocks, plots as
images, and the full text as ``output.txt`` when it is longer than a phone screen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import (
    Attachment,
    Block,
    Image,
    Inbound,
    Reply,
    Tone,
    bold,
    code,
    codeblock,
    italic,
    para,
)
from handlers.common import need_kernels

if TYPE_CHECKING:
    from bot.kernels import KernelInfo, RunResult

INLINE_LINES = 20
INLINE_CHARS = 1500
# A word right after the opening backticks is a language only when a line break follows it.
_FENCE = re.compile(r"```(?:[ \t]*([\w+-]+)[ \t]*\n)?(.*?)```", re.DOTALL)
_FLAG = re.compile(r"(--[a-z][a-z-]*)(?=\s|$)\s*", re.IGNORECASE)
_INLINE = re.compile(r"^`([^`]+)`$", re.DOTALL)
NOT_CONFIGURED = "/run is not configured on this bot."
NO_CODE = (
    "Send code after /run, e.g. /run print(1 + 1), or reply /run to a message with code in it."
)


def extract_code(args: str, replied: str | None) -> str:
    """The code to run: a fenced block, inline code, the plain text, or the replied message's."""
    for source in (args, replied or ""):
        text = source.strip()
        if not text:
            continue
        fence = _FENCE.search(text)
        if fence:
            return fence.group(2).strip("\n")
        inline = _INLINE.match(text)
        return inline.group(1) if inline else text
    return ""


def _flags(args: str) -> tuple[set[str], str]:
    """Leading ``--info`` / ``--gpu`` style options; the rest is code (``--1`` is code)."""
    flags: set[str] = set()
    rest = args.lstrip()
    while m := _FLAG.match(rest):
        flags.add(m.group(1).lower())
        rest = rest[m.end() :]
    return flags, rest


async def run(ctx: Context, msg: Inbound) -> Reply:
    from bot.kernels import KernelError

    flags, rest = _flags(msg.args)
    unknown = flags - {"--gpu", "--info"}
    if unknown:
        raise UserError(f"Unknown option {sorted(unknown)[0][:20]}. Options: --info, --gpu.")
    kernels = need_kernels(ctx, NOT_CONFIGURED)
    if "--info" in flags:
        await kernels.start()
        return info_reply(await kernels.info())
    source = extract_code(rest, msg.replied_text)
    if not source.strip():
        raise UserError(NO_CODE)
    waited: list[int] = []

    async def on_queued(position: int) -> None:
        waited.append(position)
        if msg.notify is not None and position > 1:  # a kernel starting is not worth a message
            await msg.notify(
                f"⏳ Waiting for a free kernel: you are number {position} in the queue."
            )

    try:
        result = await kernels.run(
            f"{msg.platform}:{msg.chat_id}:{msg.user_id}",
            f"{msg.platform}:{msg.user_id}",
            source,
            on_queued=on_queued,
            on_progress=msg.notify,
            on_started=msg.on_started,
            gpu="--gpu" in flags,
        )
    except KernelError as err:
        raise UserError(err.user_message) from err
    return result_reply(result, queued=max(waited, default=0))


def _text_blocks(text: str) -> tuple[list[Block], Attachment | None]:
    lines = text.rstrip("\n").split("\n")
    if len(lines) <= INLINE_LINES and len(text) <= INLINE_CHARS:
        return [codeblock(text.rstrip("\n"))], None
    head = "\n".join(lines[:INLINE_LINES])[:INLINE_CHARS]
    more = len(lines) - (head.count("\n") + 1)
    rest = f"{more} more lines" if more > 0 else "the rest"
    note = para(italic(f"… {rest}: the full output is attached as "), code("output.txt"))
    return [codeblock(head), note], Attachment(text.encode("utf-8"), "output.txt", "full output")


def result_reply(result: RunResult, *, queued: int = 0) -> Reply:
    from bot.kernels import ErrorOutput, ImageOutput, ResultOutput, RunStatus, StreamOutput

    blocks: list[Block] = []
    files: list[Attachment] = []
    images: list[Image] = []
    texts: list[str] = []
    for out in result.outputs:
        if isinstance(out, StreamOutput):
            texts.append(out.text)
        elif isinstance(out, ResultOutput):
            texts.append(out.text if out.text.endswith("\n") else out.text + "\n")
        elif isinstance(out, ErrorOutput):
            texts.append(out.traceback if out.traceback.endswith("\n") else out.traceback + "\n")
        elif isinstance(out, ImageOutput):
            images.append(Image(out.png, f"plot-{len(images) + 1}.png"))
    text = "".join(texts)
    if text.strip():
        tb, attachment = _text_blocks(text)
        blocks += tb
        if attachment is not None:
            files.append(attachment)
    if result.output_truncated:
        blocks.append(para(italic("Output was cut at the size limit.")))
    if result.images_dropped:
        blocks.append(
            para(italic(f"{result.images_dropped} more image(s) left out (limit per run)."))
        )
    for notice in result.notices:
        blocks.append(para(notice))
    if not blocks and not images:
        blocks.append(para("✓ Ran with no output." if result.ok else "No output."))
    footer = f"{result.duration_s:.2f} s"
    if queued > 1:
        footer += f" · waited in the queue (position {queued})"
    blocks.append(para(italic(footer)))
    tone: Tone = (
        "ok" if result.ok else ("error" if result.status is not RunStatus.ERROR else "warn")
    )
    return Reply(tuple(blocks), images=tuple(images), files=tuple(files), tone=tone)


def info_reply(info: KernelInfo) -> Reply:
    lines = [
        f"Plain /run: {info.backend} ({'sandboxed' if info.sandboxed else 'NOT sandboxed'})",
        f"GPU (/run --gpu): {info.gpu or 'none configured'}",
        f"Python {info.python}; " + ", ".join(info.packages),
        f"Limits: {info.limits.describe()}",
        f"Warm kernels: {info.warm_kernels} · sessions: {info.sessions} · running: {info.running} · queued: {info.queued}",
        *(f"Fence: {line}" for line in info.fences),
        *(["Backends:"] if info.backends else []),
        *(f"  · {line}" for line in info.backends),
    ]
    blocks: list[Block] = [
        para(
            bold("/run"),
            " runs Python in your own sandboxed kernel; variables persist until /reset.",
        )
    ]
    if not info.available:
        blocks.append(para(bold("Disabled: "), info.unavailable_reason or "unavailable"))
    blocks.append(codeblock("\n".join(lines)))
    return Reply.of(*blocks)


async def reset(ctx: Context, msg: Inbound) -> Reply:
    kernels = need_kernels(ctx, NOT_CONFIGURED)
    had = await kernels.reset(f"{msg.platform}:{msg.chat_id}:{msg.user_id}")
    if had:
        return Reply.of(para("Your kernel was reset: variables and files are gone."), tone="ok")
    return Reply.of(para("You had no kernel session; the next /run starts a fresh one."))
