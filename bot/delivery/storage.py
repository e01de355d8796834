"""What delivery keeps in SQLite: the inbound record and the reply outbox.

Plain sync functions taking ``db``; async code runs them through ``store.call``. Migrations
240-259 (``bot/migrations.py`` imports this module).

``delivery_inbound``: one row per request an adapter took from its platform, written before
the platform is told it was received (a redelivery is the same ``(adapter, key)`` and is
ignored). States: ``received`` → ``started`` (a /run's code began) → ``answered`` (its reply is
in the outbox, written in the same transaction) or ``dropped`` (not for this bot after all).

``delivery_outbox``: one row per reply; ``pending`` until the platform confirmed the send
(``sent``) or it was given up (``failed``). Alerts keep their own outbox in the monitor's
tables (written with the verdict); they pass through the same chat scheduler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.delivery.codec import dump_request, load_request
from bot.delivery.models import Lane, Request
from bot.store import migration, transaction

if TYPE_CHECKING:
    from sqlite_utils import Database

OPEN_STATES = ("received", "started")


@migration(240, "delivery inbound record")
def _inbound(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS delivery_inbound (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            adapter TEXT NOT NULL,
            key TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '',
            lane TEXT NOT NULL,
            request TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'received',
            attempts INTEGER NOT NULL DEFAULT 1,
            boot TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (adapter, key)
        )
        """
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS delivery_inbound_open ON delivery_inbound (adapter, state)"
    )


@migration(241, "delivery reply outbox")
def _outbox(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS delivery_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            adapter TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            lane TEXT NOT NULL,
            inbound_id INTEGER,
            who TEXT NOT NULL DEFAULT '',
            route TEXT NOT NULL DEFAULT '{}',
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            sent_at REAL,
            error TEXT
        )
        """
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS delivery_outbox_q ON delivery_outbox (adapter, state, id)"
    )


# -- the inbound record ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """An unfinished request of an earlier run of the bot (see :func:`unfinished`)."""

    id: int
    request: Request
    lane: Lane
    state: str
    attempts: int


def accept(
    db: Database, rows: list[tuple[Request, Lane]], boot: str, now: float
) -> list[int | None]:
    """Record requests in one transaction; the new row ids (None for one already recorded)."""
    ids: list[int | None] = []
    with transaction(db):
        for req, lane in rows:
            cur = db.execute(
                "INSERT OR IGNORE INTO delivery_inbound (adapter, key, chat_id, user_id, "
                "display_name, lane, request, boot, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    req.platform,
                    req.key,
                    req.chat_id,
                    req.user_id,
                    req.display_name,
                    lane,
                    dump_request(req),
                    boot,
                    req.received_at or now,
                    now,
                ],
            )
            ids.append(int(cur.lastrowid) if cur.rowcount == 1 and cur.lastrowid else None)
    return ids


def mark_started(db: Database, request_id: int, now: float) -> None:
    db.execute(
        "UPDATE delivery_inbound SET state = 'started', updated_at = ? "
        "WHERE id = ? AND state = 'received'",
        [now, request_id],
    )


def mark_dropped(db: Database, request_id: int, now: float) -> None:
    db.execute(
        "UPDATE delivery_inbound SET state = 'dropped', updated_at = ? WHERE id = ?",
        [now, request_id],
    )


def unfinished(db: Database, adapter: str, boot: str) -> list[OpenRequest]:
    """Requests of this adapter that an earlier run of the bot did not finish, oldest first."""
    rows = db.execute(
        "SELECT id, key, chat_id, user_id, display_name, lane, request, state, attempts, "
        "created_at FROM delivery_inbound WHERE adapter = ? AND state IN (?, ?) AND boot != ? "
        "ORDER BY id",
        [adapter, *OPEN_STATES, boot],
    ).fetchall()
    out = []
    for rid, key, chat, user, name, lane, raw, state, attempts, created in rows:
        req = load_request(
            raw,
            platform=adapter,
            key=key,
            chat_id=chat,
            user_id=user,
            display_name=name,
            received_at=created,
        )
        out.append(OpenRequest(rid, req, lane, state, attempts))
    return out


def restart(db: Database, request_id: int, boot: str, now: float) -> int:
    """Take over an unfinished request for this run of the bot; its attempts so far."""
    db.execute(
        "UPDATE delivery_inbound SET boot = ?, attempts = attempts + 1, state = 'received', "
        "updated_at = ? WHERE id = ?",
        [boot, now, request_id],
    )
    row = db.execute("SELECT attempts FROM delivery_inbound WHERE id = ?", [request_id]).fetchone()
    return int(row[0]) if row else 0


# -- the outbox ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A pending outbox row."""

    id: int
    chat_id: str
    lane: Lane
    request_id: int | None
    who: str
    route: dict[str, Any]
    payload: str
    attempts: int
    created_at: float


def answer(
    db: Database,
    *,
    adapter: str,
    chat_id: str,
    lane: Lane,
    request_id: int | None,
    who: str,
    route: dict[str, Any],
    payload: str,
    now: float,
) -> int:
    """Put a reply in the outbox and mark its request answered, in one transaction."""
    with transaction(db):
        cur = db.execute(
            "INSERT INTO delivery_outbox (adapter, chat_id, lane, inbound_id, who, route, "
            "payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [adapter, chat_id, lane, request_id, who, json.dumps(route), payload, now],
        )
        if request_id is not None:
            db.execute(
                "UPDATE delivery_inbound SET state = 'answered', updated_at = ? WHERE id = ?",
                [now, request_id],
            )
    return int(cur.lastrowid or 0)


def pending(db: Database, adapter: str) -> list[Outgoing]:
    rows = db.execute(
        "SELECT id, chat_id, lane, inbound_id, who, route, payload, attempts, created_at "
        "FROM delivery_outbox WHERE adapter = ? AND state = 'pending' ORDER BY id",
        [adapter],
    ).fetchall()
    return [
        Outgoing(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}"), r[6], r[7], r[8])
        for r in rows
    ]


def mark_sent(db: Database, ids: list[int], now: float) -> None:
    """The platform confirmed these sends: done (the payload is no longer needed)."""
    with transaction(db):
        for oid in ids:
            db.execute(
                "UPDATE delivery_outbox SET state = 'sent', sent_at = ?, payload = '' "
                "WHERE id = ? AND state = 'pending'",
                [now, oid],
            )


def mark_failed(db: Database, ids: list[int], error: str, now: float) -> None:
    with transaction(db):
        for oid in ids:
            db.execute(
                "UPDATE delivery_outbox SET state = 'failed', sent_at = ?, error = ?, "
                "payload = '' WHERE id = ? AND state = 'pending'",
                [now, error[:500], oid],
            )


def note_attempt(db: Database, ids: list[int], error: str) -> None:
    with transaction(db):
        for oid in ids:
            db.execute(
                "UPDATE delivery_outbox SET attempts = attempts + 1, error = ? WHERE id = ?",
                [error[:500], oid],
            )


def prune(db: Database, before: float) -> int:
    """Forget finished requests and replies older than ``before``."""
    with transaction(db):
        n = db.execute(
            "DELETE FROM delivery_outbox WHERE state != 'pending' AND created_at < ?", [before]
        ).rowcount
        n += db.execute(
            "DELETE FROM delivery_inbound WHERE state IN ('answered', 'dropped') "
            "AND created_at < ?",
            [before],
        ).rowcount
    return n
