"""/tips <words or a pasted error>: the knowledge entry that explains it, or an honest "don't know".

Matching lives in :mod:`knowledge.match` (shared with /report): known wording first, then a
specific exception class, then free words. When nothing fits well the reply says so and
lists what to check, instead of the closest unrelated tip.
"""

from __future__ import annotations

from urllib.parse import urlparse

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import (
    Block,
    Inbound,
    Inline,
    Reply,
    bold,
    bullets,
    code,
    codeblock,
    italic,
    link,
    para,
)
from knowledge.loader import KnowledgeBase
from knowledge.match import Hit, Result, generic_checks, match
from knowledge.schema import KnownMessage, Tip


def _footer(entry: KnownMessage | Tip, kb: KnowledgeBase) -> Block:
    parts: list[str] = []
    if isinstance(entry, KnownMessage):
        parts.append(kb.label(entry.platform))
    if entry.last_verified:
        parts.append(f"checked {entry.last_verified}")
    if not entry.sources:
        return para(italic(" · ".join([*parts, "no source"])))
    url = str(entry.sources[0])
    host = urlparse(url).netloc.removeprefix("www.")
    return para(italic(" · ".join([*parts, "source: "])), link(host, url))


def _unverified(entry: KnownMessage | Tip) -> list[Block]:
    return [] if entry.verified else [para(bold("Not verified: "), entry.unverified)]


def message_blocks(m: KnownMessage, kb: KnowledgeBase) -> list[Block]:
    note = (
        "This is not an outage. "
        if m.not_an_outage and "outage" not in m.explanation.lower()
        else ""
    )
    blocks: list[Block] = [
        para(bold(m.title)),
        para(note, m.explanation),
        bullets(*m.what_to_do),
    ]
    if m.code:
        blocks.append(codeblock(m.code.strip("\n"), "python"))
    return [*blocks, *_unverified(m), _footer(m, kb)]


def tip_blocks(t: Tip, kb: KnowledgeBase) -> list[Block]:
    blocks: list[Block] = [para(bold(t.title))]
    if t.explanation:
        blocks.append(para(t.explanation))
    blocks.append(bullets(*t.steps, numbered=len(t.steps) > 1))
    if t.code:
        blocks.append(codeblock(t.code.strip("\n"), "python"))
    return [*blocks, *_unverified(t), _footer(t, kb)]


def entry_blocks(entry: KnownMessage | Tip, kb: KnowledgeBase) -> list[Block]:
    if isinstance(entry, KnownMessage):
        return message_blocks(entry, kb)
    return tip_blocks(entry, kb)


def _see(hits: tuple[Hit, ...]) -> list[tuple[str | Inline, ...]]:
    return [(f"{h.entry.title} — ", code(f"/tips {h.id}")) for h in hits]


def dont_know_blocks(result: Result) -> list[Block]:
    """The honest answer when no entry fits: what to check, and what to send next."""
    blocks: list[Block] = []
    if result.is_paste:
        blocks.append(para(bold("I don't know this one yet.")))
    elif result.related:
        blocks.append(para(bold("That could be several things; which one?")))
    else:
        blocks.append(para(bold("I have no tip for that yet.")))
    if result.truncated:
        blocks.append(
            para(
                "Your paste stops before the error itself. Send the last lines of the "
                "traceback: the one that starts with the error's name (…Error:) says what went wrong."
            )
        )
    elif not result.is_paste and not result.related:
        blocks.append(para("Try other words, or paste the error message itself."))
    if result.related:
        label = "Might be related (not sure):" if result.is_paste else "Closest topics:"
        blocks.append(para(label))
        blocks.append(bullets(*_see(result.related[:3])))
    if result.is_paste:
        blocks.append(para("Here is what I would check:"))
        blocks.append(bullets(*generic_checks(result)))
    return blocks


async def tips(ctx: Context, msg: Inbound) -> Reply:
    query = msg.args.strip() or (msg.replied_text or "").strip()
    if not query:
        raise UserError(
            "Tell me what to look up, e.g. /tips mount drive, or paste the error message."
        )
    kb = ctx.knowledge
    result = match(kb, query)
    answers = result.answers[:2]
    if not answers:
        return Reply.of(*dont_know_blocks(result), tone="warn")
    blocks = entry_blocks(answers[0].entry, kb)
    if len(answers) > 1:
        other = answers[1]
        blocks.append(para("Also possible: ", other.entry.title, " — ", code(f"/tips {other.id}")))
    return Reply.of(*blocks)
