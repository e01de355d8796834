"""Start-up and shutdown never leave a mess: no orphaned sandbox, no hang, no stray directory."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.kernels import orphans
from bot.kernels.process import pid_running, spawn, wait_exited
from tests.fakes.telegram_api import FakeBot, FakeTelegram
from tests.helpers import process_env

pytestmark = pytest.mark.slow


@pytest.fixture
def run_base() -> Iterator[Path]:
    """Where the bots under test make their run directories: sandbox uids must be able to
    traverse every parent (pytest's own tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="nbhelp-test-runs-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def recorded(run_base: Path) -> dict[int, int | None]:
    """Every sandbox pid recorded under ``run_base``, with its recorded start time."""
    out: dict[int, int | None] = {}
    for path in run_base.glob("nbhelp-run-*/*/pids.json"):
        for entry in json.loads(path.read_text()):
            out[int(entry["pid"])] = entry["start"]
    return out


def run_dirs(base: Path) -> list[Path]:
    return sorted(base.glob("nbhelp-run-*"))


async def answered(bot: FakeBot, chat_id: int, text: str) -> None:
    """Until a message containing ``text`` was sent to the chat (queue notices come first)."""
    await bot.wait_for(lambda b: any(text in t for t in b.texts(chat_id)), within=300)


def still_running(pids: dict[int, int | None]) -> list[int]:
    """Recorded pids that still run the process recorded (not a reused pid, not a zombie)."""
    return [
        pid for pid, start in pids.items() if orphans.start_ticks(pid) == start and pid_running(pid)
    ]


async def all_exited(pids: dict[int, int | None]) -> list[int]:
    """Wait (bounded) for killed processes to be gone; return those that are not."""
    alive = still_running(pids)
    return [pid for pid in alive if not await wait_exited(pid, limit_s=60)]


# -- the sweep itself ------------------------------------------------------------------------


async def test_sweep_kills_a_dead_owners_sandboxes_and_spares_a_live_owners(
    tmp_path: Path,
) -> None:
    victims = [
        await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
        for _ in range(2)
    ]
    keeper = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    try:
        gone = tmp_path / "nbhelp-run-gone"
        (gone / "k1").mkdir(parents=True)
        (gone / "owner.json").write_text(json.dumps({"pid": 1, "start": -1}))  # not pid 1's
        orphans.record(gone / "k1", [p.pid for p in victims])
        alive = tmp_path / "nbhelp-run-alive"
        (alive / "k1").mkdir(parents=True)
        orphans.write_owner(alive)  # this test process: alive
        orphans.record(alive / "k1", [keeper.pid])
        unknown = tmp_path / "nbhelp-run-unknown"  # no owner file: not ours to judge
        unknown.mkdir()
        swept = orphans.sweep(tmp_path)
        assert swept == orphans.Swept(directories=1, processes=2)
        assert [await asyncio.wait_for(p.wait(), 30) for p in victims] == [-9, -9]
        assert not gone.exists() and alive.exists() and unknown.exists()
        assert keeper.returncode is None and pid_running(keeper.pid)
    finally:
        for p in [*victims, keeper]:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def test_a_reused_pid_is_never_killed(tmp_path: Path) -> None:
    bystander = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    try:
        gone = tmp_path / "nbhelp-run-gone"
        (gone / "k1").mkdir(parents=True)
        (gone / "owner.json").write_text(json.dumps({"pid": 1, "start": -1}))
        # The record names this pid, but with another start time: a different process.
        (gone / "k1" / "pids.json").write_text(json.dumps([{"pid": bystander.pid, "start": 1}]))
        assert orphans.sweep(tmp_path) == orphans.Swept(directories=1, processes=0)
        assert bystander.returncode is None and pid_running(bystander.pid)
    finally:
        bystander.kill()
        await bystander.wait()


async def test_a_cancelled_spawn_kills_what_it_started(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    argv = ["/bin/sh", "-c", f'echo $$ > "{marker}"; exec sleep 300']
    task = asyncio.create_task(
        spawn(argv, stdout=asyncio.subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    )
    await asyncio.sleep(0)  # let the spawn begin, then give up on it at once
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The child may or may not have been forked; if it was, it is killed and reaped.
    for _ in range(200):
        if marker.exists() and marker.read_text().strip():
            pid = int(marker.read_text())
            assert await wait_exited(pid, limit_s=30)
            break
        await asyncio.sleep(0.01)


# -- real bot processes ----------------------------------------------------------------------


async def start_bot(
    tmp_path: Path, run_base: Path, fake: FakeTelegram, bot: FakeBot
) -> asyncio.subprocess.Process:
    env = process_env(
        tmp_path,
        NBHELP_TELEGRAM__TOKEN=bot.token,
        NBHELP_TELEGRAM__BASE_URL=fake.base_url,
        NBHELP_WEB__ENABLED="false",
        NBHELP_RUN__RUN_DIR=str(run_base),
        NBHELP_RUN__POOL_SIZE="1",
        NBHELP_RUN__WALL_S="120",
        NBHELP_RUN__START_TIMEOUT_S="300",
    )
    starts = len(bot.calls_of("getMe"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    # Up: its services started (the orphan sweep ran) before it asked Telegram who it is,
    # and it polls after that. (A killed bot's long poll may still be counted: not this.)
    await bot.wait_calls("getMe", starts + 1, within=120)
    polls = len(bot.calls_of("getUpdates"))
    await bot.wait_calls("getUpdates", polls + 1, within=120)
    return proc


async def test_kill_9_with_live_sessions_then_restart_leaves_no_orphan(
    tmp_path: Path, run_base: Path
) -> None:
    async with FakeTelegram() as fake:
        bot = fake.new_bot("nbhelp_orphans_bot")
        first = await start_bot(tmp_path, run_base, fake, bot)
        try:
            for user in range(5):
                bot.send(f"/run x = {user}\nprint('hi', x)", chat_id=500 + user)
            for user in range(5):
                await answered(bot, 500 + user, f"hi {user}")
            pids = recorded(run_base)
            assert len(pids) >= 10  # five sessions (and a spare): bwrap and PID 1 of each
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
            second = await start_bot(tmp_path, run_base, fake, bot)
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        try:
            assert await all_exited(pids) == []
            assert len(run_dirs(run_base)) == 1  # only the new bot's own directory is left
            bot.send("/run print('after restart')", chat_id=600)
            await answered(bot, 600, "after restart")
            live = recorded(run_base)
            assert live  # the new session's sandbox
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 120) == 0
        assert await all_exited(live) == []  # a clean stop kills its kernels
        assert run_dirs(run_base) == []  # and removes its directory


def ask(
    tmp_path: Path, run_base: Path, message: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "ask", message],
        cwd=tmp_path,
        env=process_env(tmp_path, NBHELP_RUN__RUN_DIR=str(run_base), **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ask_with_the_kernel_pool_never_hangs_and_leaves_nothing(
    tmp_path: Path, run_base: Path
) -> None:
    for message in ("/run --info", "/run --gpu print(1)", "/run --info"):
        done = ask(tmp_path, run_base, message, NBHELP_RUN__POOL_SIZE="2")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert run_dirs(run_base) == []


def test_ask_gives_up_at_its_deadline_and_kills_its_kernel(tmp_path: Path, run_base: Path) -> None:
    done = ask(
        tmp_path,
        run_base,
        "/run import time\nprint('started', flush=True)\ntime.sleep(600)",
        NBHELP_STARTUP__ASK_TIMEOUT_S="20",
        NBHELP_RUN__WALL_S="600",
        NBHELP_RUN__POOL_SIZE="0",
    )
    assert done.returncode == 3, done.stderr
    assert "no answer within 20 s" in done.stderr
    assert run_dirs(run_base) == []  # its kernel was shut down
