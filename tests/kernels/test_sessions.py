"""Sessions, queueing and fairness on real kernels: each test has its own small service.

These kernels skip the numpy/pandas/matplotlib pre-imports (``preimport=False``): the tests are
about scheduling, and a bare kernel starts in half the time."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.kernels import Busy, KernelLimits, KernelService, RateLimited, RunStatus, ServiceClosed
from bot.kernels.fence_settings import FenceSettings
from bot.kernels.local import LocalBackend
from bot.kernels.process import pid_running, wait_exited
from tests.kernels.helpers import TEST_LIMITS, FakeClock, Runner, until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@asynccontextmanager
async def service(
    clock: FakeClock | None = None, fence: FenceSettings | None = None, **limits: object
) -> AsyncIterator[KernelService]:
    merged = KernelLimits(**{**TEST_LIMITS.model_dump(), **limits})
    svc = KernelService(
        merged,
        backend=LocalBackend(merged, preimport=False, fence=fence),
        **({"clock": clock} if clock else {}),
    )
    try:
        await svc.start()
        yield svc
    finally:
        await svc.aclose()


def recorder() -> tuple[list[int], object]:
    positions: list[int] = []

    async def on_queued(position: int) -> None:
        positions.append(position)

    return positions, on_queued


@pytest.mark.slow
async def test_runs_beyond_the_running_slots_queue_in_order() -> None:
    async with service(max_running=1, pool_size=1) as svc:
        a, b, c = (Runner(svc, n) for n in "abc")
        await asyncio.gather(a.ok("pass"), b.ok("pass"), c.ok("pass"))
        b_pos, b_cb = recorder()
        c_pos, c_cb = recorder()
        finished: list[str] = []

        async def go(name: str, runner: Runner, code: str, cb: object = None) -> None:
            result = await runner(code, on_queued=cb)
            assert result.status is RunStatus.OK
            finished.append(name)

        await asyncio.gather(
            go("a", a, "import time; time.sleep(0.4)"),
            go("b", b, "print('b')", b_cb),
            go("c", c, "print('c')", c_cb),
        )
        assert finished == ["a", "b", "c"]
        assert b_pos == [1]
        assert c_pos[0] == 2 and c_pos[-1] == 1


async def test_new_sessions_wait_for_a_kernel_when_the_pool_is_empty() -> None:
    async with service(pool_size=0) as svc:
        positions, cb = recorder()
        result = await Runner(svc, "cold")("print('hi')", on_queued=cb)
        assert result.status is RunStatus.OK and result.text == "hi\n"
        assert positions == [1]


@pytest.mark.slow
async def test_full_bot_closes_the_least_recently_used_idle_session() -> None:
    async with service(max_sessions=2, max_running=2, pool_size=1) as svc:
        a, b, c = (Runner(svc, n) for n in "abc")
        await a.ok("mine = 'a'")
        await b.ok("mine = 'b'")
        await c.ok("mine = 'c'")  # the bot is full: a (least recently used) makes room
        assert svc.info().sessions == 2
        again = await a("print(mine)")
        assert again.session_reset and "NameError" in again.text
        assert again.notices[0].startswith("Your previous session was closed to make room")
        assert await c.ok("print(mine)") == "c\n"


@pytest.mark.slow
async def test_when_every_session_is_busy_a_new_one_queues() -> None:
    async with service(max_sessions=2, max_running=2, pool_size=1) as svc:
        a, b, c = (Runner(svc, n) for n in "abc")
        await asyncio.gather(a.ok("pass"), b.ok("pass"))
        positions, cb = recorder()
        results = await asyncio.gather(
            a("import time; time.sleep(0.5)"),
            b("import time; time.sleep(0.5)"),
            c("print('my turn')", on_queued=cb),
        )
        assert [r.status for r in results] == [RunStatus.OK] * 3
        # first in line for a session place (then possibly for a kernel from the pool)
        assert positions and set(positions) == {1}
        assert results[2].text == "my turn\n"


@pytest.mark.slow
async def test_one_running_job_per_user() -> None:
    async with service(pool_size=2) as svc:
        await svc.wait_until_warm()
        first = asyncio.create_task(svc.run("chat:x", "busy-user", "import time; time.sleep(0.5)"))
        await until(lambda: svc.info().running >= 1)
        with pytest.raises(Busy) as err:
            await svc.run("chat:y", "busy-user", "print(1)")
        assert "already have code running" in err.value.user_message
        other = await svc.run("chat:z", "someone-else", "print(2)")
        assert other.text == "2\n"
        assert (await first).status is RunStatus.OK
        assert (await svc.run("chat:x", "busy-user", "print(3)")).text == "3\n"


async def test_one_live_session_per_person_across_chats() -> None:
    async with service(pool_size=1, max_sessions=8) as svc:
        assert (await svc.run("tg:group-a:ama", "tg:ama", "x = 'from a'")).ok
        assert (await svc.run("tg:group-b:ama", "tg:ama", "print('b')")).text == "b\n"
        assert sorted(s.key for s in svc._sessions.values()) == ["tg:group-b:ama"]
        back = await svc.run("tg:group-a:ama", "tg:ama", "print('x' in globals())")
        assert back.text == "False\n" and back.session_reset
        assert back.notices == (
            "Your session here was closed because you started one in another chat "
            "(at most 1 per person); this is a fresh one.",
        )
        # Another person is not affected.
        assert (await svc.run("tg:group-a:kofi", "tg:kofi", "print(1)")).text == "1\n"
        assert len(svc._sessions) == 2


async def test_the_per_person_limit_is_a_setting() -> None:
    async with service(pool_size=1, max_sessions_per_person=2) as svc:
        await svc.run("tg:a:ama", "tg:ama", "x = 1")
        await svc.run("tg:b:ama", "tg:ama", "y = 2")
        assert len(svc._sessions) == 2
        await svc.run("tg:c:ama", "tg:ama", "z = 3")
        assert sorted(s.key for s in svc._sessions.values()) == ["tg:b:ama", "tg:c:ama"]


async def test_rate_limit_per_user() -> None:
    clock = FakeClock()
    async with service(clock, runs_per_minute=3, pool_size=1) as svc:
        run = Runner(svc, "eager")
        for i in range(3):
            assert await run.ok(f"print({i})") == f"{i}\n"
        with pytest.raises(RateLimited) as err:
            await run("print('too many')")
        assert err.value.retry_after_s == pytest.approx(60, abs=0.01)
        assert "at most 3 runs per minute" in err.value.user_message
        assert await Runner(svc, "patient").ok("print('fine')") == "fine\n"
        clock.advance(60.5)
        assert await run.ok("print('again')") == "again\n"


async def test_idle_sessions_expire() -> None:
    clock = FakeClock()
    async with service(clock, idle_timeout_s=600, pool_size=1) as svc:
        run = Runner(svc, "sleepy")
        await run.ok("x = 1")
        clock.advance(599)
        assert await svc.expire_sessions() == 0
        clock.advance(602)
        assert await svc.expire_sessions() == 1
        result = await run("print(x)")
        assert result.session_reset and "NameError" in result.text
        assert result.notices[0] == (
            "Your previous session ended after 10 min without a run; this is a fresh one."
        )


async def test_sessions_have_a_maximum_age() -> None:
    clock = FakeClock()
    async with service(clock, max_age_s=120, pool_size=1) as svc:
        run = Runner(svc, "old")
        await run.ok("x = 1")
        clock.advance(100)
        assert await run.ok("print(x)") == "1\n"
        clock.advance(30)
        result = await run("print(x)")
        assert result.session_reset and "NameError" in result.text
        assert "reached its 2 min limit" in result.notices[0]


async def test_reset_stops_a_running_job() -> None:
    async with service(pool_size=1) as svc:
        run = Runner(svc, "reset-mid-run")
        await run.ok("pass")
        task = asyncio.create_task(run("import time; time.sleep(30)"))
        await until(lambda: svc.info().running >= 1)
        assert await svc.reset(run.session)
        result = await task
        assert result.status is RunStatus.CANCELLED and result.session_reset
        assert result.notices == ("Stopped: your session was reset.",)
        assert await run.ok("print('fresh')") == "fresh\n"


async def test_closing_the_service_kills_every_kernel() -> None:
    # background processes allowed, so that the sleep outlives its run until the service closes
    async with service(pool_size=1, fence=FenceSettings(allow_background=True)) as svc:
        await Runner(svc, "a").ok("import subprocess; p = subprocess.Popen(['sleep', '300'])")
        await svc.wait_until_warm()
        backend = svc._backend
        assert isinstance(backend, LocalBackend)
        pids = [pid for k in backend._kernels for pid in k.host_pids()]
        assert len(pids) >= 5  # 2 kernels x (bwrap PID 1 + kernel), plus the sleep
        assert all(pid_running(p) for p in pids)
    assert not any(pid_running(p) for p in pids)
    with pytest.raises(ServiceClosed):
        await svc.run("a", "a", "print(1)")


BOT = """
import asyncio, sys
from pathlib import Path
from bot.kernels import KernelLimits, KernelService, LocalBackend
from bot.kernels.fence_settings import FenceSettings

async def main():
    limits = KernelLimits(pool_size=1)
    fence = FenceSettings(allow_background=True)  # the sleep must outlive its run
    backend = LocalBackend(limits, preimport=False, run_dir=Path(sys.argv[1]), fence=fence)
    service = KernelService(limits, backend=backend)
    await service.run("s", "u", "import subprocess; subprocess.Popen(['sleep', '300'])")
    await service.wait_until_warm()
    pids = [p for k in service._backend._kernels for p in k.host_pids()]
    print(" ".join(map(str, pids)), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_kernels_die_with_the_bot() -> None:
    """A bot killed with SIGKILL (no cleanup at all) leaves no sandbox process behind."""
    run_dir = tempfile.mkdtemp(prefix="nbhelp-test-run-")  # the dead bot cannot remove it
    os.chmod(run_dir, 0o711)  # as root, kernels run as other uids that must reach it
    try:
        bot = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BOT,
            run_dir,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        assert bot.stdout is not None
        line = await asyncio.wait_for(bot.stdout.readline(), 60)
        pids = [int(p) for p in line.split()]
        assert len(pids) >= 5 and all(pid_running(p) for p in pids)  # 2 sandboxes and a sleep
        bot.kill()
        await bot.wait()
        assert all([await wait_exited(p) for p in pids])
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
