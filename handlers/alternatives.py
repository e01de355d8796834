"""/alternatives [platform] [needs…]: a ranked short list with reasons and a first step."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import (
    Block,
    Inbound,
    Inline,
    Reply,
    Span,
    bold,
    bullets,
    code,
    codes,
    italic,
    para,
)
from handlers.common import currently_down, split_platform
from knowledge.ranking import NEEDS, SYNONYMS, Pick, need_of, rank
from knowledge.schema import Platform


def _fact_detail(p: Platform, need: str) -> str:
    if need == "gpu" and p.accelerators.gpu_model not in ("", "unknown"):
        return f"free GPU: {p.accelerators.gpu_model}"
    if need == "tpu" and p.accelerators.tpu_model not in ("", "unknown"):
        return f"free TPU: {p.accelerators.tpu_model}"
    return NEEDS[need].label


def why(pick: Pick) -> str:
    p = pick.platform
    parts = [_fact_detail(p, n) for n in pick.met]
    parts += [f"{_fact_detail(p, n)}, with conditions" for n in pick.partial]
    parts += [f"{NEEDS[n].label}: unknown" for n in pick.unknown]
    if pick.conflicts:  # the reason says more than "not: no phone number needed"
        parts += [f"✗ {c}" for c in pick.conflicts]
        parts += [f"✗ not: {NEEDS[n].label}" for n in pick.missed if n != "no-phone"]
    else:
        parts += [f"✗ not: {NEEDS[n].label}" for n in pick.missed]
    if not parts and p.strengths:
        parts.append(p.strengths[0])
    return "; ".join(parts) or p.summary


def item(pick: Pick) -> tuple[Inline, ...]:
    p = pick.platform
    spans: list[Inline] = [bold(p.name), Span(f" — {why(pick)}")]
    if pick.down:
        spans.append(Span("\n🔴 reported down right now"))
    if p.caveats:
        spans.append(Span(f"\n⚠ {p.caveats[0]}"))
    if p.move_steps:
        spans.append(Span(f"\n→ {p.move_steps[0]}"))
    return tuple(spans)


def parse_needs(ctx: Context, ws: list[str]) -> list[str]:
    needs: list[str] = []
    for w in ws:
        n = need_of(w)
        if n is None:
            vocab = [*NEEDS, *SYNONYMS]
            raise UserError(
                f"I don't know “{w[:40]}” as a platform or a need. "
                f"Needs I understand: {', '.join(NEEDS)}.",
                suggestions=tuple(ctx.knowledge.suggest(w, vocab)),
            )
        if n not in needs:
            needs.append(n)
    return needs


async def alternatives(ctx: Context, msg: Inbound) -> Reply:
    platform, rest = split_platform(ctx, msg.args)
    needs = parse_needs(ctx, rest)
    picks = rank(
        ctx.knowledge.alive(),
        needs,
        exclude=platform.id if platform else None,
        down=await currently_down(ctx),
    )
    target = f"Instead of {platform.name}" if platform else "Where to run your notebook"
    title = f"{target}" + (f" — {', '.join(NEEDS[n].label for n in needs)}" if needs else "")
    blocks: list[Block] = []
    if platform is not None and not platform.alive:
        blocks.append(
            para(f"{platform.name} was retired on {platform.lifecycle.retired_on}. Options today:")
        )
    if needs and all(p.missed for p in picks):
        blocks.append(para("No platform I know meets all of that; these come closest:"))
    blocks.append(bullets(*(item(p) for p in picks), numbered=True))
    oldest = min((p.platform.last_verified for p in picks), default=None)
    footer: list[Inline] = (
        [italic(f"Facts checked {oldest}; free tiers change often. ")] if oldest else []
    )
    footer += [Span("Details: "), code(f"/platforms {picks[0].platform.id}")] if picks else []
    if not needs:
        footer += [Span(". Add needs, e.g. "), *codes(["gpu", "no-phone", "offline"])]
    blocks.append(para(*footer))
    return Reply.of(*blocks, title=title)
