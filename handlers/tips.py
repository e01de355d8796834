"""/tips <words>: full-text search over tips and known (non-outage) messages.

Pasting an error text finds its explanation: known message patterns are matched first, then
the FTS5 index ranks the rest.
"""

from __future__ import annotations

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import Block, Inbound, Reply, bold, bullets, codeblock, italic, para
from knowledge import search
from knowledge.schema import KnownMessage, Tip


def message_blocks(m: KnownMessage, platform_name: str) -> list[Block]:
    note = (
        "This is not an outage. "
        if m.not_an_outage and "outage" not in m.explanation.lower()
        else ""
    )
    return [
        para(bold(m.title)),
        para(note, m.explanation),
        bullets(*m.what_to_do),
        para(italic(f"{platform_name} · checked {m.last_verified}")),
    ]


def tip_blocks(t: Tip) -> list[Block]:
    blocks: list[Block] = [para(bold(t.title)), bullets(*t.steps, numbered=len(t.steps) > 1)]
    if t.code:
        blocks.append(codeblock(t.code, "python"))
    return blocks


async def tips(ctx: Context, msg: Inbound) -> Reply:
    query = msg.args.strip()
    if not query:
        raise UserError(
            "Tell me what to look up, e.g. /tips mount drive or paste the error message."
        )
    kb = ctx.knowledge
    blocks: list[Block] = []
    shown: set[str] = set()
    known = kb.match_message(query)
    if known is not None:
        blocks += message_blocks(known, kb.label(known.platform))
        shown.add(known.id)
    messages = {m.id: m for m in kb.messages}
    tips_by_id = {t.id: t for t in kb.tips}
    hits = [] if known is not None else search.search(ctx.store, query, limit=3)
    for hit in hits:
        if hit.doc_id in shown or len(shown) >= 2:
            continue
        shown.add(hit.doc_id)
        if hit.kind == "message":
            m = messages[hit.doc_id]
            blocks += message_blocks(m, kb.label(m.platform))
        else:
            blocks += tip_blocks(tips_by_id[hit.doc_id])
    if not blocks:
        topics = ", ".join(t.title.lower() for t in kb.tips[:4])
        raise UserError(f"No tip matches that. Try other words, e.g. {topics}.")
    return Reply.of(*blocks)
