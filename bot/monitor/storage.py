"""What the monitor keeps in SQLite: verdict state, history, incidents, alerts, reports.

Every method here is synchronous and takes the ``db`` it works on: the service runs them on
the store's threads (``await store.call(...)`` / ``store.read(...)``), never on the event loop.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from bot.monitor import alerts, history
from bot.monitor.db import dumps, loads
from bot.monitor.evidence import Evidence
from bot.monitor.reports import ReportOutcome, Reports
from bot.monitor.settings import MonitorSettings
from bot.monitor.verdict import (
    Confidence,
    MachineState,
    Status,
    Thresholds,
    observe,
    step,
)
from bot.monitor.view import VerdictView, load_views
from bot.store import set_meta, transaction
from knowledge.schema import Platform

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check of one platform."""

    platform_id: str
    status: Status  # as shown: "unknown" when this bot is offline
    confidence: Confidence | None
    offline: bool
    pending: Status | None
    previous: Status
    evidence: tuple[Evidence, ...]
    checked_at: float
    alert: str | None = None  # the alert kind queued by this check, if any
    queued: int = 0  # outbox rows written

    @property
    def changed(self) -> bool:
        return self.status != self.previous


class MonitorStorage:
    def __init__(
        self,
        platforms: Mapping[str, Platform],
        settings: MonitorSettings,
        reports: Reports,
        *,
        alternative: Callable[[str], str | None] | None = None,
    ) -> None:
        self.platforms = platforms
        self.settings = settings
        self.reports = reports
        self.thresholds = Thresholds(
            failure=settings.failure_threshold, success=settings.success_threshold
        )
        self.alternative = alternative  # platform id -> "Kaggle" (best alternative), for alerts

    # -- one sweep's results ---------------------------------------------------------------

    def apply(
        self,
        db: Database,
        by: Mapping[str, list[Evidence]],
        offline: bool,
        now: float,
        *,
        reached: bool = False,
    ) -> tuple[dict[str, Verdict], bool]:
        """Step every platform's state machine, record history, incidents and alerts in one
        transaction. Returns the verdicts and whether any alert was queued."""
        out: dict[str, Verdict] = {}
        queued_any = False
        with transaction(db):
            answered = reached or any(not e.network_failure for evs in by.values() for e in evs)
            if offline or answered:
                _set_net(db, offline, now)
            for pid, evidence in by.items():
                if not evidence:  # nothing to check (retired or no sources)
                    out[pid] = Verdict(pid, "unknown", None, False, None, "unknown", (), now)
                    continue
                out[pid], queued = self._apply_one(db, pid, evidence, offline, now)
                queued_any |= queued > 0
            self._maybe_prune(db, now)
        return out, queued_any

    def _apply_one(
        self, db: Database, pid: str, evidence: list[Evidence], offline: bool, now: float
    ) -> tuple[Verdict, int]:
        row = db.execute("SELECT state FROM monitor_state WHERE platform = ?", [pid]).fetchone()
        before = MachineState.from_dict(loads(row[0], {})) if row else MachineState()
        state = step(before, observe(evidence, now, offline=offline), self.thresholds)
        latency = _latency(evidence)
        db.execute(
            "INSERT INTO monitor_state (platform, status, state, evidence, checked_at, "
            "latency_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform) DO UPDATE SET "
            "status = excluded.status, state = excluded.state, "
            "evidence = excluded.evidence, checked_at = excluded.checked_at, "
            "latency_ms = excluded.latency_ms",
            [
                pid,
                state.shown,
                dumps(state.to_dict()),
                dumps([e.to_dict() for e in evidence]),
                now,
                latency,
            ],
        )
        history.record(db, pid, now, state.shown, latency)
        kind, queued = None, 0
        if not offline:
            self._incident(db, pid, state, evidence, now)
            kind, queued = self._alert(db, pid, state, evidence, now)
        verdict = Verdict(
            platform_id=pid,
            status=state.shown,
            confidence=state.confidence,
            offline=offline,
            pending=state.pending,
            previous=before.shown,
            evidence=tuple(evidence),
            checked_at=now,
            alert=kind,
            queued=queued,
        )
        return verdict, queued

    def _incident(
        self, db: Database, pid: str, state: MachineState, evidence: Sequence[Evidence], now: float
    ) -> None:
        bad = [e for e in evidence if e.signal in ("degraded", "down", "maintenance")]
        official = [e for e in bad if e.statement]
        top = (official or bad)[0] if (official or bad) else None
        history.track_incident(
            db,
            pid,
            state.status,
            now,
            since=state.since,
            title=(top.incident_title or top.line) if top else state.status,
            url=top.incident_url if top else None,
            official=state.by_official,
        )

    def _alert(
        self, db: Database, pid: str, state: MachineState, evidence: Sequence[Evidence], now: float
    ) -> tuple[str | None, int]:
        before = alerts.load_state(db, pid)
        after, event = alerts.decide(before, state.status, now, self.settings, since=state.since)
        if after != before:
            alerts.save_state(db, pid, after)
        if event is None:
            return None, 0
        order = {"down": 0, "maintenance": 1, "degraded": 2}
        lines = [
            e.line
            for e in sorted(evidence, key=lambda e: (not e.statement, order.get(e.signal, 3)))
            if e.signal in order
        ]
        alt = None
        if self.alternative is not None and event.kind != "recovered":
            try:
                alt = self.alternative(pid)
            except Exception:  # a ranking bug must not lose the alert
                log.exception("alternative for %s failed", pid)
        text = alerts.render(event, self.platforms[pid].name, lines, alt)
        return event.kind, alerts.enqueue(db, pid, event, text, lines)

    def _maybe_prune(self, db: Database, now: float) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'monitor.pruned_at'").fetchone()
        if row and now - float(row[0]) < self.settings.prune_every_s:
            return
        self.prune(db, now)

    def prune(self, db: Database, now: float) -> int:
        s = self.settings
        with transaction(db):
            n = history.prune(db, now, s)
            n += self.reports.prune(db, now)
            n += alerts.prune_outbox(db, now, s.outbox_retention_days)
            set_meta(db, "monitor.pruned_at", str(now))
        return n

    # -- reading ---------------------------------------------------------------------------

    def views(self, db: Database, ids: Sequence[str], now: float) -> list[VerdictView]:
        s = self.settings
        return load_views(
            db,
            self.platforms,
            ids,
            now,
            reports=self.reports,
            stale_after={pid: s.stale_after(pid) for pid in ids},
            threshold=s.failure_threshold,
        )

    def statuses(self, db: Database) -> dict[str, Status]:
        """``{platform id: status as shown}`` in one query (for ranking alternatives)."""
        net = db.execute("SELECT offline FROM monitor_net WHERE id = 1").fetchone()
        rows = db.execute("SELECT platform, status FROM monitor_state").fetchall()
        offline = bool(net and net[0])
        stored: dict[str, Status] = dict(rows)
        return {
            pid: stored.get(pid, "unknown") if p.alive and not offline else "unknown"
            for pid, p in self.platforms.items()
        }

    @staticmethod
    def checked_at(db: Database) -> dict[str, float]:
        rows = db.execute("SELECT platform, checked_at FROM monitor_state").fetchall()
        return {r[0]: r[1] for r in rows if r[1] is not None}

    # -- reports and subscriptions ---------------------------------------------------------

    def add_report(
        self,
        db: Database,
        platform_id: str,
        *,
        user_key: str,
        chat_key: str,
        now: float,
        counts: bool,
        text: str,
    ) -> ReportOutcome:
        with transaction(db):
            return self.reports.add(
                db,
                platform=platform_id,
                user_key=user_key,
                chat_key=chat_key,
                now=now,
                counts=counts,
                text=text,
            )

    @staticmethod
    def subscribe(
        db: Database, adapter: str, chat_id: str, ids: Iterable[str] | None, now: float
    ) -> alerts.Subscription:
        with transaction(db):
            return alerts.subscribe(db, adapter, chat_id, None if ids is None else list(ids), now)

    def unsubscribe(
        self, db: Database, adapter: str, chat_id: str, ids: Iterable[str] | None, now: float
    ) -> alerts.Subscription:
        monitored = [pid for pid, p in self.platforms.items() if p.alive and p.status_sources]
        with transaction(db):
            return alerts.unsubscribe(
                db, adapter, chat_id, None if ids is None else list(ids), monitored, now
            )

    def chat_gone(self, db: Database, adapter: str, chat_id: str, error: str, now: float) -> int:
        monitored = [pid for pid, p in self.platforms.items() if p.alive and p.status_sources]
        with transaction(db):
            alerts.unsubscribe(db, adapter, chat_id, None, monitored, now)
            return alerts.give_up_chat(db, adapter, chat_id, error, now)


def _set_net(db: Database, offline: bool, now: float) -> None:
    db.execute(
        "INSERT INTO monitor_net (id, offline, since, checked_at) VALUES (1, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET since = CASE WHEN monitor_net.offline = "
        "excluded.offline THEN monitor_net.since ELSE excluded.since END, "
        "offline = excluded.offline, checked_at = excluded.checked_at",
        [int(offline), now, now],
    )


def _latency(evidence: Sequence[Evidence]) -> float | None:
    """The platform's response time: the median of its own probes that got an answer."""
    vals = [
        e.latency_ms
        for e in evidence
        if e.is_probe and e.latency_ms is not None and not e.network_failure
    ]
    return round(statistics.median(vals), 1) if vals else None
