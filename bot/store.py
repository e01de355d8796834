"""The store: one SQLite file through sqlite-utils, with numbered migrations.

Each feature registers its schema steps with :func:`migration`; :meth:`Store.migrate` applies the
ones a database has not seen yet, in order, at start. Several processes (the running bot,
``python -m bot ask``, ``python -m bot probe``) share the same file, so the connection uses WAL
and a busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")


def _import_sqlite_utils() -> ModuleType:
    """Import sqlite-utils without its optional pandas/numpy support.

    sqlite-utils imports pandas and numpy when they are installed (the kernel pool installs
    them), which costs ~0.25 s at every start of ``python -m bot ask``. The store never
    inserts numpy values, so hide them during this one import unless already loaded.
    """
    hidden = [m for m in ("pandas", "numpy") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    try:
        import sqlite_utils
    finally:
        for m in hidden:
            del sys.modules[m]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

Migration = Callable[["sqlite_utils.Database"], None]
_MIGRATIONS: dict[int, tuple[str, Migration]] = {}


def migration(number: int, name: str) -> Callable[[Migration], Migration]:
    """Register a schema step. Numbers are global and never reused."""

    def register(fn: Migration) -> Migration:
        if number in _MIGRATIONS and _MIGRATIONS[number][1] is not fn:
            raise RuntimeError(f"migration {number} registered twice")
        _MIGRATIONS[number] = (name, fn)
        return fn

    return register


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbhelp-db")

    async def call(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn(db)`` on the store's own thread, never on the event loop's.

        Every SQLite access from async code goes through here: a lock held by another process
        then delays only the commands that need the database, not the whole bot.
        """

        def run() -> T:
            with self.lock:
                return fn(self.db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""
        import bot.migrations  # noqa: F401  (registers every feature's steps)

        applied: list[str] = []
        with self.lock:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(number INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {row[0] for row in self.db.execute("SELECT number FROM schema_migrations")}
            for number in sorted(_MIGRATIONS):
                if number in done:
                    continue
                name, fn = _MIGRATIONS[number]
                with self.db.conn:
                    self.db.execute("BEGIN IMMEDIATE")
                    # Another process may have applied it meanwhile.
                    if self.db.execute(
                        "SELECT 1 FROM schema_migrations WHERE number = ?", [number]
                    ).fetchone():
                        continue
                    fn(self.db)
                    self.db.execute(
                        "INSERT INTO schema_migrations (number, name) VALUES (?, ?)", [number, name]
                    )
                applied.append(name)
        return applied

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.db.conn.close()
