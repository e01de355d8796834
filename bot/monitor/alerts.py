"""Alerts on transitions only, subscriptions, and the persisted outbound queue.

:func:`decide` is pure: given the alert state of a platform and its confirmed status, it says
whether an alert goes out. Went down / degraded / into maintenance, recovered (with the
downtime), a reminder while still down at most every ``reminder_s``; status changes faster than
``flap_threshold`` per ``flap_window_s`` are held back until the status settles. The state and
the queue live in SQLite and are written in the same transaction as the verdict, so a restart
neither repeats nor loses an alert. Adapters drain the queue with ``pending`` / ``mark_sent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import sqlite_utils

from bot.monitor.db import dumps, loads
from bot.monitor.settings import MonitorSettings
from bot.monitor.verdict import Status
from bot.text import duration

AlertKind = Literal["down", "degraded", "maintenance", "recovered", "reminder"]
ALL = "*"
MAX_ATTEMPTS = 5


def category(status: Status | None) -> str | None:
    if status == "up":
        return "ok"
    if status in ("degraded", "down"):
        return "problem"
    if status == "maintenance":
        return "maintenance"
    return None


@dataclass(frozen=True, slots=True)
class AlertState:
    last_alerted: Status | None = None
    last_alert_at: float | None = None
    problem_since: float | None = None
    current: Status | None = None
    changes: tuple[float, ...] = ()
    flapping: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changes"] = list(self.changes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AlertState:
        if not d:
            return cls()
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["changes"] = tuple(kw.get("changes", ()))
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: AlertKind
    status: Status
    at: float
    since: float | None = None  # when the problem began
    downtime_s: float | None = None  # for "recovered"


def decide(
    state: AlertState, status: Status, at: float, s: MonitorSettings, *, since: float | None = None
) -> tuple[AlertState, AlertEvent | None]:
    """Pure: the next alert state and the alert to send, if any. Unknown never alerts."""
    if category(status) is None:
        return state, None
    changes = state.changes
    if state.current is not None and status != state.current:
        changes = (*changes, at)
    changes = tuple(t for t in changes if at - t <= s.flap_window_s)
    flapping = len(changes) >= s.flap_threshold
    st = replace(state, current=status, changes=changes, flapping=flapping)
    last = state.last_alerted
    if last is None and status == "up":
        return replace(st, last_alerted="up"), None  # first sight of a healthy platform
    cat, last_cat = category(status), category(last)
    escalation = status == "down" and last == "degraded"
    if cat != last_cat or escalation:
        if flapping:
            return st, None
        problem_since = state.problem_since if escalation else (since or at)
        if cat == "ok":
            downtime = at - state.problem_since if state.problem_since is not None else None
            event = AlertEvent("recovered", status, at, state.problem_since, downtime)
            return replace(st, last_alerted=status, last_alert_at=at, problem_since=None), event
        kind: AlertKind = "maintenance" if status == "maintenance" else status  # type: ignore[assignment]  # cat != "ok" leaves down/degraded
        event = AlertEvent(kind, status, at, problem_since)
        return replace(
            st, last_alerted=status, last_alert_at=at, problem_since=problem_since
        ), event
    if (
        cat == "problem"
        and state.last_alert_at is not None
        and at - state.last_alert_at >= s.reminder_s
    ):
        event = AlertEvent("reminder", status, at, state.problem_since)
        return replace(st, last_alert_at=at), event
    return st, None


EMOJI = {"up": "✅", "degraded": "🟠", "down": "🔴", "maintenance": "🔧", "unknown": "❔"}


def render(
    event: AlertEvent, name: str, evidence: Sequence[str], alternative: str | None = None
) -> str:
    """Plain text; adapters escape it for their markup."""
    lines: list[str]
    if event.kind == "recovered":
        took = f" after {duration(event.downtime_s)}" if event.downtime_s is not None else ""
        lines = [f"{EMOJI['up']} {name} is back up{took}."]
    elif event.kind == "reminder":
        dur = f" for {duration(event.at - event.since)}" if event.since is not None else ""
        lines = [f"{EMOJI[event.status]} {name} is still {event.status}{dur}."]
    elif event.kind == "maintenance":
        lines = [f"{EMOJI['maintenance']} {name}: scheduled maintenance in progress."]
    else:
        lines = [f"{EMOJI[event.status]} {name} is {event.status} — problems detected."]
    if event.kind != "recovered":
        lines += [f"• {e}" for e in evidence[:3]]
        if alternative:
            lines.append(f"Try instead: {alternative}")
    return "\n".join(lines)


# -- persistence -----------------------------------------------------------------------------
def load_state(db: sqlite_utils.Database, platform: str) -> AlertState:
    row = db.execute("SELECT state FROM monitor_alert_state WHERE platform = ?", [platform])
    r = row.fetchone()
    return AlertState.from_dict(loads(r[0]) if r else None)


def save_state(db: sqlite_utils.Database, platform: str, state: AlertState) -> None:
    db.execute(
        "INSERT INTO monitor_alert_state (platform, state) VALUES (?, ?) "
        "ON CONFLICT (platform) DO UPDATE SET state = excluded.state",
        [platform, dumps(state.to_dict())],
    )


@dataclass(frozen=True, slots=True)
class OutboundAlert:
    id: int
    adapter: str
    chat_id: str
    platform: str
    kind: str
    status: str
    text: str
    evidence: tuple[str, ...]
    created_at: float
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Subscription:
    all: bool
    platforms: frozenset[str]

    def covers(self, platform: str) -> bool:
        return self.all or platform in self.platforms

    @property
    def empty(self) -> bool:
        return not self.all and not self.platforms


def subscribers(db: sqlite_utils.Database, platform: str) -> list[tuple[str, str]]:
    rows = db.execute(
        "SELECT DISTINCT adapter, chat_id FROM monitor_subscriptions WHERE platform IN (?, ?) "
        "ORDER BY adapter, chat_id",
        [platform, ALL],
    ).fetchall()
    return [(a, c) for a, c in rows]


def enqueue(
    db: sqlite_utils.Database,
    platform: str,
    event: AlertEvent,
    text: str,
    evidence: Sequence[str],
) -> int:
    """One outbox row per subscribed chat; returns how many."""
    subs = subscribers(db, platform)
    for adapter, chat in subs:
        db.execute(
            "INSERT INTO monitor_outbox (adapter, chat_id, platform, kind, status, text, evidence,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                adapter,
                chat,
                platform,
                event.kind,
                event.status,
                text,
                dumps(list(evidence)),
                event.at,
            ],
        )
    return len(subs)


def subscribe(
    db: sqlite_utils.Database,
    adapter: str,
    chat_id: str,
    platforms: Iterable[str] | None,
    at: float,
) -> Subscription:
    wanted = [ALL] if platforms is None else list(platforms)
    if wanted == [ALL]:
        db.execute(
            "DELETE FROM monitor_subscriptions WHERE adapter = ? AND chat_id = ?",
            [adapter, chat_id],
        )
    for p in wanted:
        db.execute(
            "INSERT OR IGNORE INTO monitor_subscriptions (adapter, chat_id, platform, created_at) "
            "VALUES (?, ?, ?, ?)",
            [adapter, chat_id, p, at],
        )
    return subscription(db, adapter, chat_id)


def unsubscribe(
    db: sqlite_utils.Database,
    adapter: str,
    chat_id: str,
    platforms: Iterable[str] | None,
    every: Iterable[str],
    at: float,
) -> Subscription:
    """Drop some platforms (``every`` lists all ids, to turn "all" into "all but these")."""
    if platforms is None:
        db.execute(
            "DELETE FROM monitor_subscriptions WHERE adapter = ? AND chat_id = ?",
            [adapter, chat_id],
        )
        return Subscription(False, frozenset())
    drop = set(platforms)
    current = subscription(db, adapter, chat_id)
    keep = (set(every) if current.all else set(current.platforms)) - drop
    db.execute(
        "DELETE FROM monitor_subscriptions WHERE adapter = ? AND chat_id = ?", [adapter, chat_id]
    )
    for p in sorted(keep):
        db.execute(
            "INSERT INTO monitor_subscriptions (adapter, chat_id, platform, created_at) "
            "VALUES (?, ?, ?, ?)",
            [adapter, chat_id, p, at],
        )
    return subscription(db, adapter, chat_id)


def subscription(db: sqlite_utils.Database, adapter: str, chat_id: str) -> Subscription:
    rows = db.execute(
        "SELECT platform FROM monitor_subscriptions WHERE adapter = ? AND chat_id = ?",
        [adapter, chat_id],
    ).fetchall()
    ps = {r[0] for r in rows}
    return Subscription(ALL in ps, frozenset(ps - {ALL}))


def pending(db: sqlite_utils.Database, adapter: str, limit: int = 50) -> list[OutboundAlert]:
    rows = db.execute(
        "SELECT id, adapter, chat_id, platform, kind, status, text, evidence, created_at, attempts"
        " FROM monitor_outbox WHERE adapter = ? AND state = 'pending' ORDER BY id LIMIT ?",
        [adapter, limit],
    ).fetchall()
    return [
        OutboundAlert(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(loads(r[7], [])), r[8], r[9])
        for r in rows
    ]


def mark_sent(db: sqlite_utils.Database, alert_id: int, at: float) -> bool:
    cur = db.execute(
        "UPDATE monitor_outbox SET state = 'sent', sent_at = ? WHERE id = ? AND state = 'pending'",
        [at, alert_id],
    )
    return cur.rowcount == 1


def mark_failed(db: sqlite_utils.Database, alert_id: int, error: str, at: float) -> None:
    """Count a failed send; after ``MAX_ATTEMPTS`` the row is given up (state 'failed')."""
    db.execute(
        "UPDATE monitor_outbox SET attempts = attempts + 1, error = ?, "
        "state = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE state END, sent_at = ? "
        "WHERE id = ? AND state = 'pending'",
        [error[:500], MAX_ATTEMPTS, at, alert_id],
    )


def move_chat(db: sqlite_utils.Database, adapter: str, old: str, new: str) -> int:
    """A chat changed its id (a Telegram group became a supergroup): its subscriptions and
    pending alerts follow it. Returns the subscriptions moved."""
    moved = db.execute(
        "UPDATE OR IGNORE monitor_subscriptions SET chat_id = ? WHERE adapter = ? AND chat_id = ?",
        [new, adapter, old],
    ).rowcount
    db.execute(
        "DELETE FROM monitor_subscriptions WHERE adapter = ? AND chat_id = ?", [adapter, old]
    )
    db.execute(
        "UPDATE monitor_outbox SET chat_id = ? WHERE adapter = ? AND chat_id = ? "
        "AND state = 'pending'",
        [new, adapter, old],
    )
    return moved


def give_up_chat(
    db: sqlite_utils.Database, adapter: str, chat_id: str, error: str, at: float
) -> int:
    """The chat is gone: fail every pending alert for it at once."""
    return db.execute(
        "UPDATE monitor_outbox SET state = 'failed', error = ?, sent_at = ? "
        "WHERE adapter = ? AND chat_id = ? AND state = 'pending'",
        [error[:500], at, adapter, chat_id],
    ).rowcount


def prune_outbox(db: sqlite_utils.Database, now: float, days: int) -> int:
    return db.execute(
        "DELETE FROM monitor_outbox WHERE state != 'pending' AND created_at < ?",
        [now - days * 86400],
    ).rowcount
