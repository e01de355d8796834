"""What a handler needs to answer ``/status``: read from the store, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlite_utils

from bot.monitor.db import loads
from bot.monitor.evidence import Evidence
from bot.monitor.history import Incident, Uptime, last_incidents, uptimes
from bot.monitor.reports import Reports, ReportSummary
from bot.monitor.verdict import OFFLINE_LINE, Confidence, MachineState, Status, headline
from bot.text import ago
from knowledge.schema import Platform

EMOJI: dict[str, str] = {
    "up": "🟢",
    "degraded": "🟠",
    "down": "🔴",
    "maintenance": "🔧",
    "unknown": "⚪",
}


@dataclass(frozen=True, slots=True)
class EvidenceLine:
    line: str
    signal: str
    source: str
    kind: str
    official: bool
    age_s: float
    url: str | None = None  # the incident's page when there is one
    failed_step: str | None = None
    weight: str = "full"  # full | hint (possible problem, not a verdict) | info (news)

    @property
    def text(self) -> str:
        """``"HTTP 503 from colab.research.google.com (2 min ago)"``."""
        return f"{self.line} ({ago(self.age_s)})"


@dataclass(frozen=True, slots=True)
class VerdictView:
    platform_id: str
    name: str
    status: Status
    headline: str
    confidence: Confidence | None = None
    offline: bool = False  # this bot cannot reach the internet
    monitored: bool = True
    retired: bool = False
    checked_at: float | None = None
    age_s: float | None = None
    stale: bool = True
    latency_ms: float | None = None
    since: float | None = None
    pending: Status | None = None
    evidence: tuple[EvidenceLine, ...] = ()
    uptime: Uptime = field(default_factory=Uptime)
    last_incident: Incident | None = None
    reports: ReportSummary = field(default_factory=ReportSummary)
    official_incident: EvidenceLine | None = None
    now: float = 0.0  # when this view was read
    checking: bool = False  # an on-the-spot check was still running when this was read

    @property
    def emoji(self) -> str:
        return EMOJI.get(self.status, "⚪")

    @property
    def news(self) -> tuple[EvidenceLine, ...]:
        """Announcements that are information (a deprecation, a migration), not problems."""
        return tuple(e for e in self.evidence if e.weight == "info")

    @property
    def hints(self) -> tuple[EvidenceLine, ...]:
        """Weaker signals of trouble ("possible problem"): shown, never a verdict on their own."""
        return tuple(
            e for e in self.evidence if e.weight == "hint" and e.signal in ("degraded", "down")
        )

    @property
    def probably_local(self) -> bool:
        """Up from here, official feeds quiet, no community wave: most likely the asker's side."""
        return (
            self.status == "up"
            and not self.offline
            and self.official_incident is None
            and not self.hints
            and self.reports.level == "none"
        )

    def short_line(self) -> str:
        """``"🟢 Colab: up · 180 ms · 2 min ago"`` for the no-argument ``/status``."""
        parts = [f"{self.emoji} {self.name}: {self.headline if self.status != 'up' else 'up'}"]
        if self.latency_ms is not None and not self.offline:
            parts.append(f"{self.latency_ms:.0f} ms")
        if self.age_s is None:
            parts.append("checking now" if self.checking else "not checked yet")
        else:
            parts.append(ago(self.age_s) + (", checking again" if self.checking else ""))
        return " · ".join(parts)

    def lines(self) -> list[str]:
        """Plain-text detail for consoles and ``probe``: verdict, evidence, uptime, incident."""
        out = [f"{self.emoji} {self.name}: {self.headline}"]
        out += [f"  • {e.text}" for e in self.evidence]
        if self.reports.reports:
            out.append(f"  • {self.reports.line}")
        u = self.uptime
        if u.h24 is not None:
            avg = f", avg {u.avg_latency_ms:.0f} ms" if u.avg_latency_ms is not None else ""
            out.append(f"  uptime 24h {pct(u.h24)} · 7d {pct(u.d7)} · 30d {pct(u.d30)}{avg}")
        inc = self.last_incident
        if inc is not None:
            when = "ongoing" if inc.ongoing else f"ended {ago(self.now - (inc.ended_at or 0))}"
            out.append(f"  last incident: {inc.status} '{inc.title}' ({when})")
        if self.stale and self.monitored:
            out.append("  (stale: not checked within its interval)")
        return out


def pct(x: float | None) -> str:
    """An uptime ratio as ``99.5%``; ``?`` when there is no history yet."""
    return "?" if x is None else f"{x * 100:.1f}%"


def load_views(
    db: sqlite_utils.Database,
    platforms: Mapping[str, Platform],
    ids: Sequence[str],
    now: float,
    *,
    reports: Reports,
    stale_after: Mapping[str, float],
    threshold: int,
) -> list[VerdictView]:
    """Views for ``ids`` with a handful of batched queries (no per-platform round trips)."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = {
        r[0]: r
        for r in db.execute(
            "SELECT platform, state, evidence, checked_at, latency_ms FROM monitor_state "
            f"WHERE platform IN ({marks})",
            list(ids),
        ).fetchall()
    }
    net = db.execute("SELECT offline FROM monitor_net WHERE id = 1").fetchone()
    net_offline = bool(net and net[0])
    ups = uptimes(db, now, ids)
    incs = last_incidents(db, ids)
    reps = reports.summaries(db, ids, now)
    out: list[VerdictView] = []
    for pid in ids:
        p = platforms[pid]
        monitored = p.alive and bool(p.status_sources)
        row = rows.get(pid)
        state = MachineState.from_dict(loads(row[1], {})) if row else MachineState()
        evidence = [Evidence.from_dict(d) for d in loads(row[2], [])] if row else []
        checked_at = row[3] if row else None
        lines = tuple(
            EvidenceLine(
                line=e.line,
                signal=e.signal,
                source=e.source,
                kind=e.kind,
                official=e.official,
                age_s=max(0.0, now - e.checked_at),
                url=e.incident_url,
                failed_step=e.failed_step,
                weight=e.weight,
            )
            for e in evidence
        )
        official_inc = next(
            (
                ln
                for ln, e in zip(lines, evidence, strict=True)
                if e.statement and e.signal in ("degraded", "down", "maintenance")
            ),
            None,
        )
        offline = net_offline and monitored
        status: Status = "unknown" if offline else state.status
        conf = state.confidence
        head = headline(state, net_offline=offline, threshold=threshold)
        rep = reps.get(pid, ReportSummary())
        if not p.alive:
            status, head, conf = "unknown", _retired_line(p), None
        elif not monitored:
            head = "unknown — not monitored (no status source)"
        elif not offline and state.status == "up" and rep.level != "none":
            conf = "possible problems"
            if rep.level == "detected":
                status, head = "degraded", "possible problems — many community reports"
            else:
                head = "up from here, but some community reports"
        age = None if checked_at is None else max(0.0, now - checked_at)
        out.append(
            VerdictView(
                platform_id=pid,
                name=p.name,
                status=status,
                headline=OFFLINE_LINE if offline else head,
                confidence=conf,
                offline=offline,
                monitored=monitored,
                retired=not p.alive,
                checked_at=checked_at,
                age_s=age,
                stale=monitored and (age is None or age > stale_after.get(pid, 300.0)),
                latency_ms=row[4] if row else None,
                since=state.since,
                pending=state.pending,
                evidence=lines,
                uptime=ups.get(pid, Uptime()),
                last_incident=incs.get(pid),
                reports=rep,
                official_incident=official_inc,
                now=now,
            )
        )
    return out


def _retired_line(p: Platform) -> str:
    when = p.lifecycle.retired_on.isoformat() if p.lifecycle.retired_on else "?"
    return f"retired on {when}"
