"""Small helpers over the shared :class:`bot.store.Store` connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlite_utils

from bot.store import Store


@contextmanager
def transaction(store: Store) -> Iterator[sqlite_utils.Database]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the store's lock (nested calls join the outer one)."""
    with store.lock:
        conn = store.db.conn
        if conn.in_transaction:
            yield store.db
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield store.db
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
