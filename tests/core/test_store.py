"""The database never stalls the bot, never corrupts and never silently goes away."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot import migrations
from bot.core.app import BUSY, Core
from bot.runner import serve
from bot.settings import Settings
from bot.store import Store, StoreError, StoreGone, StoreInUse, check_integrity
from bot.wiring import build_core
from tests.conftest import Chat
from tests.helpers import process_env

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()  # hold the write lock until the test says so
conn.execute("COMMIT")
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ask(tmp_path: Path, message: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "ask", message],
        cwd=tmp_path,
        env=process_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- bad paths and bad files ---------------------------------------------------------------


def test_a_directory_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is a directory; set NBHELP_DB to a file in it"):
        Store(tmp_path)
    done = ask(tmp_path, "/help", NBHELP_DB=str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"nbhelp: cannot start: database {tmp_path} is a directory; set NBHELP_DB to a file "
        f"in it, e.g. {tmp_path / 'nbhelp.db'}"
    )


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only place (a read-only bind mount: root may write anywhere else)."""
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(target), str(target)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot make a read-only mount here (needs root and mount(8))")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_an_unwritable_place_is_refused_with_the_fix(read_only_dir: Path) -> None:
    with pytest.raises(StoreError) as err:
        Store(read_only_dir / "nbhelp.db")
    assert str(err.value) == (
        f"the database's folder {read_only_dir} is not writable (SQLite keeps its journal "
        "there); set NBHELP_DB to a writable place"
    )
    with pytest.raises(StoreError, match=r"cannot create the database's folder .*; set NBHELP_DB"):
        Store(read_only_dir / "sub" / "nbhelp.db")


def test_garbage_and_damaged_files_are_refused_and_never_modified(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all\n" * 100)
    before = digest(garbage)
    with pytest.raises(StoreError) as err:
        Store(garbage)
    assert str(err.value).startswith(f"database {garbage} is not an SQLite database. It was")
    assert "Restore it from a backup" in str(err.value)
    assert digest(garbage) == before and not Path(f"{garbage}-wal").exists()

    damaged = tmp_path / "damaged.db"
    good = Store(damaged)
    good.migrate(migrations.steps())
    good.db.execute("CREATE TABLE filler (x TEXT)")
    good.db.conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    good.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    good.close()
    data = bytearray(damaged.read_bytes())
    data[4096 * 3 : 4096 * 6] = b"\xff" * (4096 * 3)  # pages in the middle overwritten
    damaged.write_bytes(bytes(data))
    before = digest(damaged)
    with pytest.raises(StoreError, match=r"is damaged .* Restore it from a backup"):
        check_integrity(damaged)
    done = ask(tmp_path, "/help", NBHELP_DB=str(damaged))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"nbhelp: cannot start: database {damaged} is damaged")
    assert digest(damaged) == before


# -- a lock held by another process ------------------------------------------------------


@contextlib.asynccontextmanager
async def write_lock(db: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holds the database's write lock until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCKER,
        str(db),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"locked\n"
        yield proc
    finally:
        if proc.returncode is None:
            proc.stdin.write(b"\n")
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
            await asyncio.wait_for(proc.wait(), 60)


async def busy_core(tmp_path: Path, busy_timeout_s: float) -> Core:
    settings = Settings(
        db=tmp_path / "bot.db",
        startup={"db_busy_timeout_s": busy_timeout_s},
        monitor={"background": False, "control_urls": ()},
        _env_file=None,  # type: ignore[call-arg]
    )
    return build_core(settings)


async def test_a_lock_delays_only_the_commands_that_write(tmp_path: Path) -> None:
    core = await busy_core(tmp_path, busy_timeout_s=60)
    try:
        async with write_lock(tmp_path / "bot.db"):
            report = asyncio.create_task(Chat(core, user_id="a").say("/report kaggle slow"))
            # While the report waits for the lock: the help, a status read and a knowledge
            # answer are all served (reads are not blocked by a writer in WAL mode).
            assert "/alternatives" in await Chat(core).say("/help")
            assert "Kaggle" in await Chat(core).say("/alternatives gpu")
            assert "gets no alerts" in await Chat(core).say("/subscriptions")
            assert not report.done()
        assert "your report on Kaggle Notebooks is counted" in await report
    finally:
        await core.aclose()


async def test_a_lock_held_too_long_gets_a_clear_answer(tmp_path: Path) -> None:
    core = await busy_core(tmp_path, busy_timeout_s=0.2)
    try:
        async with write_lock(tmp_path / "bot.db"):
            text = await Chat(core).say("/report kaggle slow")
            assert text == BUSY
            assert "/alternatives" in await Chat(core).say("/help")
        assert "is counted" in await Chat(core).say("/report kaggle slow")
    finally:
        await core.aclose()


# -- the file going away, two bots -----------------------------------------------------------


async def test_a_deleted_database_stops_the_bot_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        db=tmp_path / "bot.db",
        startup={"db_watch_s": 0.05},
        monitor={"background": False, "control_urls": ()},
        run={"enabled": False},
        _env_file=None,  # type: ignore[call-arg]
    )
    core = build_core(settings)
    started = asyncio.Event()

    class Watcher:
        name = "test"
        connected = True

        async def start(self) -> None:
            started.set()

        async def stop(self) -> None: ...

        async def send_alert(self, chat_id: str, reply: object) -> None: ...

    running = asyncio.create_task(serve(core, [Watcher()]))
    await asyncio.wait_for(started.wait(), 60)
    (tmp_path / "bot.db").unlink()
    outcome = await asyncio.wait_for(running, 60)
    assert outcome.code == 1
    assert outcome.reasons == [f"database {tmp_path / 'bot.db'} was deleted while the bot ran"]
    assert any(
        r.levelname == "CRITICAL" and "restore the database" in r.message for r in caplog.records
    )


async def test_a_replaced_database_refuses_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "bot.db")
    store.migrate(migrations.steps())
    (tmp_path / "bot.db").rename(tmp_path / "old.db")
    sqlite3.connect(tmp_path / "bot.db").close()  # someone put another file in its place
    with pytest.raises(StoreGone, match="was replaced by another file"):
        await store.call(lambda db: db.execute("SELECT 1").fetchone())
    store.close()


def test_a_second_bot_on_the_same_database_is_refused(tmp_path: Path) -> None:
    first, second = Store(tmp_path / "bot.db"), Store(tmp_path / "bot.db")
    first.claim()
    with pytest.raises(StoreInUse) as err:
        second.claim()
    assert str(err.value).startswith("another nbhelp bot (pid ")
    assert "is serving database" in str(err.value)
    first.close()
    second.claim()  # released with the first one
    second.close()


def test_no_sqlite_call_runs_on_the_event_loop_thread(tmp_path: Path) -> None:
    """Every connection the store opens is used only from its own threads."""
    store = Store(tmp_path / "bot.db")
    store.migrate(migrations.steps())
    threads: set[str] = set()

    def where(db: object) -> None:
        threads.add(threading.current_thread().name)

    async def main() -> None:
        await store.call(where)
        await store.read(where)

    asyncio.run(main())
    store.close()
    assert threads == {"nbhelp-db_0", "nbhelp-db-read_0"}
