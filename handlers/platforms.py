"""/platforms [platform]: a compact overview, or one platform's card."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.models import Block, Inbound, Reply, Span, bold, bullets, code, italic, link, para
from handlers.common import resolve_platform
from knowledge.schema import Fact, Platform

MARK: dict[Fact, str] = {"yes": "✓", "no": "✗", "partial": "~", "unknown": "?"}


def _accel(p: Platform) -> str:
    bits = []
    if p.accelerators.gpu != "no":
        model = "" if p.accelerators.gpu_model == "unknown" else f" {p.accelerators.gpu_model}"
        bits.append(f"GPU{model} {MARK[p.accelerators.gpu]}")
    if p.accelerators.tpu != "no":
        model = "" if p.accelerators.tpu_model == "unknown" else f" {p.accelerators.tpu_model}"
        bits.append(f"TPU{model} {MARK[p.accelerators.tpu]}")
    return ", ".join(bits) or "CPU only"


def retired_blocks(ctx: Context, p: Platform) -> list[Block]:
    successors = [
        ctx.knowledge.label(s) if s in ctx.knowledge.platforms else s
        for s in p.lifecycle.successors
    ]
    return [
        para(bold(p.name), f" was retired on {p.lifecycle.retired_on}."),
        para(p.lifecycle.note or p.summary),
        para("Successors: ", ", ".join(successors), "."),
        para("See ", code("/alternatives"), " for where to go today."),
    ]


def card(ctx: Context, p: Platform) -> Reply:
    if not p.alive:
        return Reply.of(*retired_blocks(ctx, p), tone="warn")
    s = p.signup
    facts = [
        ("Accelerator: ", _accel(p)),
        ("Limits: ", p.limits.summary),
        ("Storage: ", p.storage.summary),
        (
            "Sign-up: ",
            f"account {MARK[s.account]} · phone {MARK[s.phone]} · card {MARK[s.card]}"
            + (f" — {s.notes}" if s.notes else ""),
        ),
        ("Internet from notebook: ", MARK[p.access.internet]),
        ("Languages: ", ", ".join(p.languages)),
    ]
    blocks: list[Block] = [
        para(bold(p.name), " — ", p.summary),
        bullets(*((bold(k), Span(v)) for k, v in facts)),
    ]
    if p.caveats:
        blocks.append(para(bold("Catches: "), "; ".join(p.caveats[:3])))
    blocks.append(para(bold("Move a notebook there:")))
    blocks.append(bullets(*p.move_steps, numbered=True))
    blocks.append(
        para(
            link("Open", str(p.url)),
            " · ",
            italic(f"checked {p.last_verified}; ✓ yes ✗ no ~ with conditions ? unknown"),
        )
    )
    return Reply.of(*blocks)


async def platforms(ctx: Context, msg: Inbound) -> Reply:
    if msg.args.strip():
        return card(ctx, resolve_platform(ctx, msg.args))
    lines = []
    for p in ctx.knowledge.alive():
        lines.append((bold(p.id), Span(f" — {_accel(p)}; {p.limits.summary}")))
    retired = [p.name for p in ctx.knowledge.platforms.values() if not p.alive]
    blocks: list[Block] = [bullets(*lines)]
    if retired:
        blocks.append(para(italic("Retired: " + ", ".join(retired))))
    blocks.append(para(code("/platforms kaggle"), " shows one platform in full."))
    return Reply.of(*blocks, title="Free notebook platforms")
