"""The Kaggle backend's table (migrations 220-239): every kernel slug, before it is pushed.

One row per slug: who asked, which runner process owns it (``instance``) and when it last
reported (``heartbeat_at``), its state, the GPU seconds charged for it, and when it was deleted
on Kaggle. Rows not yet deleted whose owner stopped reporting are deleted on Kaggle by the next
runner (start-up and a periodic reaper), so a crash never leaves a billed session behind. The
GPU seconds feed the per-user daily and per-deployment weekly budgets.

Plain sync functions taking ``db``; async code calls them through ``await store.call(fn)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.store import migration

if TYPE_CHECKING:
    import sqlite_utils

# States of a row.
RECORDED = "recorded"  # about to be pushed (it may or may not exist on Kaggle)
PUSHED = "pushed"  # Kaggle accepted it (or it was found after an unclear answer)
RETIRED = "retired"  # given up before it ran (capacity cap, unclear push): delete it
FINISHED = "finished"  # the run is over; deletion pending
DELETED = "deleted"  # gone from Kaggle (or never got there)


@migration(220, "kaggle runs")
def _kaggle_runs(db: sqlite_utils.Database) -> None:
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS kaggle_runs (
            slug TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            user_key TEXT NOT NULL,
            instance TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            pushed_at REAL,
            running_at REAL,
            ended_at REAL,
            deleted_at REAL,
            gpu_seconds REAL NOT NULL DEFAULT 0,
            charged_at REAL,
            outcome TEXT
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS kaggle_runs_user ON kaggle_runs (user_key, charged_at)")
    db.execute("CREATE INDEX IF NOT EXISTS kaggle_runs_charged ON kaggle_runs (charged_at)")
    db.execute(
        "CREATE INDEX IF NOT EXISTS kaggle_runs_open ON kaggle_runs (heartbeat_at) "
        "WHERE deleted_at IS NULL"
    )


@dataclass(frozen=True, slots=True)
class Leftover:
    slug: str
    owner: str
    state: str
    instance: str


def record(
    db: sqlite_utils.Database, slug: str, owner: str, user_key: str, instance: str, now: float
) -> None:
    """Before the push: the slug exists in the ledger before it can exist on Kaggle."""
    db.execute(
        "INSERT INTO kaggle_runs (slug, owner, user_key, instance, state, created_at, "
        "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [slug, owner, user_key, instance, RECORDED, now, now],
    )


def set_state(db: sqlite_utils.Database, slug: str, state: str, now: float) -> None:
    column = {PUSHED: "pushed_at", FINISHED: "ended_at", DELETED: "deleted_at"}.get(state)
    sets = "state = ?, heartbeat_at = ?" + (f", {column} = COALESCE({column}, ?)" if column else "")
    args: list[object] = [state, now] + ([now] if column else [])
    db.execute(f"UPDATE kaggle_runs SET {sets} WHERE slug = ?", [*args, slug])


def heartbeat(db: sqlite_utils.Database, slugs: list[str], now: float) -> None:
    if slugs:
        marks = ",".join("?" * len(slugs))
        db.execute(
            f"UPDATE kaggle_runs SET heartbeat_at = ? WHERE slug IN ({marks})", [now, *slugs]
        )


def mark_running(db: sqlite_utils.Database, slug: str, now: float) -> None:
    db.execute(
        "UPDATE kaggle_runs SET running_at = COALESCE(running_at, ?), heartbeat_at = ? "
        "WHERE slug = ?",
        [now, now, slug],
    )


def charge(db: sqlite_utils.Database, slug: str, seconds: float, outcome: str, now: float) -> None:
    db.execute(
        "UPDATE kaggle_runs SET gpu_seconds = ?, charged_at = ?, outcome = ?, "
        "state = CASE WHEN state = ? THEN state ELSE ? END, ended_at = COALESCE(ended_at, ?), "
        "heartbeat_at = ? WHERE slug = ?",
        [max(0.0, seconds), now, outcome, DELETED, FINISHED, now, now, slug],
    )


def used_seconds(db: sqlite_utils.Database, since: float, user_key: str | None = None) -> float:
    """GPU seconds charged since ``since`` (for one user, or the whole deployment)."""
    sql = "SELECT COALESCE(SUM(gpu_seconds), 0) FROM kaggle_runs WHERE charged_at >= ?"
    args: list[object] = [since]
    if user_key is not None:
        sql += " AND user_key = ?"
        args.append(user_key)
    return float(db.execute(sql, args).fetchone()[0])


def oldest_charge(
    db: sqlite_utils.Database, since: float, user_key: str | None = None
) -> float | None:
    sql = "SELECT MIN(charged_at) FROM kaggle_runs WHERE charged_at >= ? AND gpu_seconds > 0"
    args: list[object] = [since]
    if user_key is not None:
        sql += " AND user_key = ?"
        args.append(user_key)
    row = db.execute(sql, args).fetchone()
    return None if row[0] is None else float(row[0])


def leftovers(db: sqlite_utils.Database, instance: str, stale_before: float) -> list[Leftover]:
    """Rows to delete on Kaggle: not deleted, and either left by a runner that stopped
    reporting, or retired by this one (whose deletion failed earlier)."""
    rows = db.execute(
        "SELECT slug, owner, state, instance FROM kaggle_runs WHERE deleted_at IS NULL AND "
        "(heartbeat_at < ? OR (instance = ? AND state IN (?, ?))) ORDER BY created_at",
        [stale_before, instance, RETIRED, FINISHED],
    ).fetchall()
    return [Leftover(*row) for row in rows]


def open_slugs(db: sqlite_utils.Database) -> list[str]:
    """Slugs not deleted on Kaggle yet (tests and ``/run --info``)."""
    return [r[0] for r in db.execute("SELECT slug FROM kaggle_runs WHERE deleted_at IS NULL")]


def prune(db: sqlite_utils.Database, before: float) -> int:
    cur = db.execute(
        "DELETE FROM kaggle_runs WHERE deleted_at IS NOT NULL AND created_at < ? "
        "AND (charged_at IS NULL OR charged_at < ?)",
        [before, before],
    )
    return cur.rowcount
