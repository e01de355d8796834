"""Every feature's schema steps, in one place so their numbers never collide.

Numbers: 1-99 core, 100-199 monitor (outage intelligence), 200-219 kernel pool (local
kernel records), 220-239 Kaggle backend, 240-259 delivery (inbound record, reply outbox).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.store import Migration, migration, registered_migrations

if TYPE_CHECKING:
    import sqlite_utils


@migration(1, "meta")
def _meta(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration(2, "search index")
def _search(db: sqlite_utils.Database) -> None:
    # No longer used: /tips matches in memory (knowledge.match). Kept so existing databases
    # and the migration numbering stay as they are.
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS kb_search USING fts5("
        "doc_id UNINDEXED, kind UNINDEXED, title, body, keywords, tokenize = 'porter unicode61')"
    )


# Every feature's steps register themselves on import.
import bot.delivery.storage  # noqa: E402
import bot.kernels.kaggle.ledger  # noqa: E402
import bot.monitor.migrations  # noqa: E402, F401


def steps() -> Mapping[int, tuple[str, Migration]]:
    """Every feature's schema steps (importing this module registered them)."""
    return registered_migrations()
