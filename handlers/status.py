"""/status [platform] [chart [24h|7d|30d]]: the outage monitor's verdict, its evidence and age.

Retired platforms answer from the knowledge base. A stale verdict is checked on the spot; in
a chat the answer waits a few seconds at most (then says a check is running), while the
console and ``ask`` wait for the check to finish.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core.context import Context
from bot.core.errors import UserError
from bot.core.models import (
    Block,
    Image,
    Inbound,
    Inline,
    Reply,
    Span,
    bold,
    bullets,
    code,
    italic,
    link,
    para,
)
from bot.core.parse import words
from bot.monitor.history import SPAN_LABELS
from bot.monitor.view import pct
from handlers.common import currently_down, need_monitor, resolve_platform
from handlers.platforms import retired_blocks
from knowledge.ranking import rank
from knowledge.schema import Platform

if TYPE_CHECKING:
    from bot.monitor.view import VerdictView


TONE = {"up": "ok", "degraded": "warn", "maintenance": "warn", "down": "error", "unknown": "info"}
CHART_WORDS = {"chart", "graph", "plot", "history"}
# Every way to name a chart range, and the range it means.
SPANS = {
    "24h": "24h",
    "1d": "24h",
    "day": "24h",
    "7d": "7d",
    "week": "7d",
    "7days": "7d",
    "1w": "7d",
    "30d": "30d",
    "month": "30d",
    "30days": "30d",
}
RANGE_WORD = re.compile(r"^\d+(h|d|w|m|days?|weeks?|months?)$")
LOCAL_CHECKS = (
    "Your connection: does another site load? Try mobile data instead of Wi-Fi, or the reverse",
    "DNS or VPN: switch DNS (e.g. 1.1.1.1) or turn a VPN off/on",
    "Account limits: a usage limit or quota message is not an outage (/tips quota)",
    "Weak connection: /alternatives low-bandwidth",
)


async def status(ctx: Context, msg: Inbound) -> Reply:
    ws = words(msg.args)
    wants_chart = bool((CHART_WORDS | set(SPANS)) & set(ws))
    spans = [SPANS[w] for w in ws if w in SPANS]
    span = spans[-1] if spans else "24h"
    odd = [w for w in ws if w not in SPANS and RANGE_WORD.match(w)]
    if odd:
        raise UserError(
            f"I can draw the last 24h, 7d or 30d, not {odd[0][:12]}: "
            f"e.g. /status {' '.join(w for w in ws if w not in odd) or 'colab'} chart 30d."
        )
    name = " ".join(w for w in ws if w not in CHART_WORDS and w not in SPANS)
    platform = resolve_platform(ctx, name) if name else None
    if platform is not None and not platform.alive:
        return Reply.of(*retired_blocks(ctx, platform), tone="warn")
    monitor = need_monitor(
        ctx, "Live status is not available: the outage monitor is not configured."
    )
    if platform is None:
        if wants_chart:
            raise UserError("Name a platform for a chart, e.g. /status colab chart.")
        return overview(await monitor.status_all(patient=msg.patient))
    if not platform.status_sources:
        return Reply.of(
            para(
                bold(platform.name),
                " has no status source to check: nothing server-side can go down.",
            ),
            para(platform.summary),
        )
    if wants_chart:
        chart = await monitor.chart(platform.id, span)
        if isinstance(chart, str):  # too little data yet: say so rather than draw nothing
            return Reply.of(para(bold(f"{platform.name}: "), chart))
        label = SPAN_LABELS[span]
        return Reply(
            (para(f"{platform.name}: response time and up/down, {label}."),),
            images=(Image(chart, f"{platform.id}-{span}.png", f"{platform.name} — {label}"),),
        )
    view = await monitor.status(platform.id, patient=msg.patient)
    return detail(
        ctx, platform, view, down=await currently_down(ctx) if view.status != "up" else set()
    )


def overview(views: list[VerdictView]) -> Reply:
    blocks: list[Block] = []
    if views and all(v.offline for v in views if v.monitored):
        from bot.monitor import OFFLINE_LINE

        blocks.append(
            para(
                bold(f"⚪ {OFFLINE_LINE[0].upper()}{OFFLINE_LINE[1:]}."),
                " The platforms may be fine: I cannot tell right now.",
            )
        )
    blocks.append(bullets(*(_line(v) for v in views if v.monitored)))
    unmonitored = [v.name for v in views if not v.monitored]
    if unmonitored:
        blocks.append(
            para(italic("Nothing to check (runs on your side): " + ", ".join(unmonitored)))
        )
    blocks.append(para(code("/status colab"), " gives the evidence for one platform."))
    return Reply.of(*blocks, title="Notebook platforms — status")


def _line(v: VerdictView) -> str:
    if v.offline:  # the headline is the same everywhere and already said above
        return f"{v.emoji} {v.name}: unknown"
    return v.short_line()


def detail(ctx: Context, platform: Platform, v: VerdictView, *, down: set[str]) -> Reply:
    blocks: list[Block] = []
    if v.checking:
        blocks.append(para(italic("A fresh check is still running; this is the last result.")))
    evidence: list[tuple[Inline, ...]] = []
    for e in v.evidence:
        if e.url:
            evidence.append((Span(e.text + " "), link("details", e.url)))
        else:
            evidence.append((Span(e.text),))
    if v.reports.reports:
        evidence.append((Span(v.reports.line),))
    if evidence:
        blocks.append(bullets(*evidence))
    facts = []
    u = v.uptime
    if u.h24 is not None:
        avg = f" · avg {u.avg_latency_ms:.0f} ms" if u.avg_latency_ms is not None else ""
        facts.append(f"Uptime 24h {pct(u.h24)} · 7d {pct(u.d7)} · 30d {pct(u.d30)}{avg}")
    if v.last_incident is not None:
        inc = v.last_incident
        state = "ongoing" if inc.ongoing else "ended"
        facts.append(f"Last incident: {inc.title} ({inc.status}, {state})")
    if facts:
        blocks.append(para(italic(" · ".join(facts))))
    if v.offline:
        blocks.append(
            para("I cannot reach the internet from here, so I cannot tell whether it is down.")
        )
    elif v.status != "up":
        picks = rank(ctx.knowledge.alive(), exclude=platform.id, down=down, limit=1)
        if picks:
            p = picks[0].platform
            blocks.append(
                para(
                    bold("Meanwhile: "),
                    f"{p.name} — {p.move_steps[0]}. More: ",
                    code(f"/alternatives {platform.id}"),
                )
            )
    elif v.probably_local and v.pending is None:
        blocks.append(
            para(
                bold("Up from here and nobody reports trouble: "),
                "it is probably on your side. Check:",
            )
        )
        checks = list(LOCAL_CHECKS)
        known = [m for m in ctx.knowledge.messages if m.platform == platform.id and m.not_an_outage]
        if known:
            checks.insert(
                2,
                f"A message such as “{known[0].patterns[0]}” is not an outage: /tips {known[0].patterns[0]}",
            )
        blocks.append(bullets(*checks))
    blocks.append(
        para(
            code(f"/status {platform.id} chart"),
            " · ",
            code(f"/report {platform.id}"),
            " if it fails for you",
        )
    )
    return Reply.of(
        *blocks,
        title=f"{v.emoji} {platform.name}: {v.headline}",
        tone=TONE.get(v.status, "info"),
    )
