"""The store: one SQLite file through sqlite-utils, with numbered migrations.

SQLite never runs on the event loop's thread. Async code reaches the database through
:meth:`Store.call` (the writer: its own thread and connection) or :meth:`Store.read` (a second
thread and a read-only connection: in WAL mode readers are not blocked by a writer, ours or
another process's). A lock held too long by another process becomes :class:`StoreBusy`, which
the core answers with a clear sentence instead of a frozen bot.

The file is checked before it is touched: a directory, an unwritable place, or a file that is
not an SQLite database stops the start with one line naming the path and the fix, and a corrupt
file is never modified. While the bot runs, :meth:`Store.check_file` notices the file being
deleted or replaced (a write to a deleted file would be lost at the next start).

Several processes (the running bot, ``python -m bot ask``, ``python -m bot probe``) share the
file: WAL and a busy timeout make that safe. Only one long-running bot may serve a database at
a time (:meth:`Store.claim`): two would deliver every alert twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, TypeVar
from urllib.parse import quote

if TYPE_CHECKING:
    from sqlite_utils import Database

T = TypeVar("T")
SQLITE_HEADER = b"SQLite format 3\x00"


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

Migration = Callable[["Database"], None]
_MIGRATIONS: dict[int, tuple[str, Migration]] = {}


def migration(number: int, name: str) -> Callable[[Migration], Migration]:
    """Register a schema step. Numbers are global and never reused (see ``bot/migrations.py``)."""

    def register(fn: Migration) -> Migration:
        if number in _MIGRATIONS and _MIGRATIONS[number][1] is not fn:
            raise RuntimeError(f"migration {number} registered twice")
        _MIGRATIONS[number] = (name, fn)
        return fn

    return register


def registered_migrations() -> Mapping[int, tuple[str, Migration]]:
    return dict(_MIGRATIONS)


class StoreError(Exception):
    """The database cannot be used; the message names the path and the fix."""


class StoreBusy(StoreError):
    """Another process held the database's lock longer than the busy timeout."""


class StoreGone(StoreError):
    """The database file was deleted or replaced while the bot ran."""


class StoreInUse(StoreError):
    """Another long-running bot serves this database."""


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (a nested call joins the outer transaction)."""
    conn = db.conn
    if conn.in_transaction:
        yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _connect(target: str, *, uri: bool, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        target, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None, uri=uri
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    return conn


def check_path(path: Path) -> None:
    """Refuse a database path that cannot work, before anything is written."""
    if path.is_dir():
        raise StoreError(
            f"database {path} is a directory; set NBHELP_DB to a file in it, e.g. {path / 'nbhelp.db'}"
        )
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the database's folder {parent} ({exc.strerror}); "
            "set NBHELP_DB to a writable place"
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"the database's folder {parent} is not writable (SQLite keeps its journal there); "
            "set NBHELP_DB to a writable place"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"database {path} is not readable and writable by this user")


def check_integrity(path: Path) -> None:
    """A read-only look at an existing file: an SQLite database that passes ``quick_check``.

    Never modifies the file (read-only connection; no journal mode change, no migration)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    restore = (
        "It was not modified. Restore it from a backup (docs/deploy.md, 'Backups'), or move it "
        "away to start with an empty database."
    )
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreError(f"database {path} is not an SQLite database. {restore}")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"database {path} is damaged ({exc}). {restore}") from None
    if [r[0] for r in rows] != ["ok"]:
        first = rows[0][0] if rows else "no answer"
        raise StoreError(f"database {path} is damaged ({first}). {restore}")


class Store:
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.busy_timeout_s = busy_timeout_s
        self._identity: tuple[int, int] | None = None
        self._claim: IO[str] | None = None
        if not self.memory:
            file = Path(self.path)
            check_path(file)
            check_integrity(file)
        try:
            conn = _connect(self.path, uri=False, busy_timeout_s=busy_timeout_s)
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbhelp-db")
        self._reader = self._writer
        self.reader_db = self.db
        if not self.memory:
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)
            target = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
            rconn = _connect(target, uri=True, busy_timeout_s=busy_timeout_s)
            self.reader_db = sqlite_utils.Database(rconn)
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbhelp-db-read")
        self._read_lock = threading.RLock() if not self.memory else self.lock

    # -- async access ----------------------------------------------------------------------

    async def call(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the writer thread (reads and writes), never on the event loop's."""

        def run() -> T:
            self.check_file()
            with self.lock:
                return _busy_as_error(fn, self.db, self.path)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def read(self, fn: Callable[[Database], T]) -> T:
        """Run ``fn(db)`` on the reader thread: a read-only connection that a writer (ours or
        another process's) does not block."""

        def run() -> T:
            with self._read_lock:
                return _busy_as_error(fn, self.reader_db, self.path)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    # -- the file ---------------------------------------------------------------------------

    def check_file(self) -> None:
        """Raise :class:`StoreGone` if the file we opened was deleted or replaced."""
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreGone(f"database {self.path} was deleted while the bot ran") from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise StoreGone(f"database {self.path} was replaced by another file while the bot ran")

    def claim(self) -> None:
        """Become the one long-running bot of this database, or raise :class:`StoreInUse`.

        An advisory lock on ``<db>.lock``, released by the OS when this process ends (even on
        SIGKILL), so a restarted bot never finds a stale claim."""
        if self.memory or self._claim is not None:
            return
        lock_path = f"{self.path}.lock"
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the process)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreInUse(
                f"another nbhelp bot (pid {holder}) is serving database {self.path}; stop it "
                "first, or give this one its own NBHELP_DB"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._claim = handle

    # -- set-up (before the loop runs) -----------------------------------------------------

    def migrate(self, steps: Mapping[int, tuple[str, Migration]]) -> list[str]:
        """Apply pending migrations (``bot.migrations.steps()``); return the names applied."""
        applied: list[str] = []
        with self.lock:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(number INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {row[0] for row in self.db.execute("SELECT number FROM schema_migrations")}
            for number in sorted(steps):
                if number in done:
                    continue
                name, fn = steps[number]
                with transaction(self.db):
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
            set_meta(self.db, key, value)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        if self._reader is not self._writer:
            self._reader.shutdown(wait=True)
            self.reader_db.conn.close()
        self.db.conn.close()
        if self._claim is not None:
            self._claim.close()
            self._claim = None


def set_meta(db: Database, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def _busy_as_error(fn: Callable[[Database], T], db: Database, path: str) -> T:
    try:
        return fn(db)
    except sqlite3.OperationalError as exc:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            raise StoreBusy(f"database {path} is locked by another process ({exc})") from exc
        raise
