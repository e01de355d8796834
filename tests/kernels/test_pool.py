"""The warm pool's policy: burst refills, completing lean spares, which spare a session gets.

The backend here is a scripted stand-in for the backend interface (starts finish when the test
says so), because *when* the pool starts kernels is what is tested, and a real kernel's start
time depends on the machine's load; the clock is a fake one. What a real lean kernel is and how
its top-up works is tested on real sandboxed kernels in ``test_lazy_imports.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.kernels import KernelLimits, KernelService, RunStatus
from bot.kernels.backend import ExecReply, KernelBackend, KernelHandle, OutputSink
from bot.kernels.jupyter import ExecOutcome
from bot.kernels.pool import BURST_TAKES, BURST_WINDOW_S, WarmPool
from bot.kernels.sizing import SPARE_MB, Machine, pool_plan
from tests.kernels.helpers import FakeClock, until


class Kernel(KernelHandle):
    def __init__(self, kernel_id: str, lean: bool) -> None:
        super().__init__(kernel_id)
        self.lean = lean
        self.dead = False

    @property
    def alive(self) -> bool:
        return not self.dead


class ScriptedBackend(KernelBackend):
    """Each start waits until the test releases it; top-ups likewise."""

    name = "scripted"

    def __init__(self, *, lean: bool = False) -> None:
        self.lean = lean
        self.pending: list[asyncio.Future[None]] = []  # one per start in progress
        self.topping: list[tuple[Kernel, asyncio.Future[None]]] = []
        self.started = 0
        self.most_at_once = 0
        self.shut: list[KernelHandle] = []

    @property
    def sandboxed(self) -> bool:
        return True

    async def check(self) -> None:
        return None

    async def start(self, owner: str | None = None) -> KernelHandle:
        release = asyncio.get_running_loop().create_future()
        self.pending.append(release)
        self.most_at_once = max(self.most_at_once, len(self.pending))
        try:
            await release
        finally:
            self.pending.remove(release)
        self.started += 1
        return Kernel(f"k{self.started}", self.lean)

    def finish_starts(self, n: int | None = None) -> None:
        for fut in list(self.pending)[:n]:
            if not fut.done():
                fut.set_result(None)

    async def top_up(self, kernel: KernelHandle) -> None:
        assert isinstance(kernel, Kernel)
        release = asyncio.get_running_loop().create_future()
        self.topping.append((kernel, release))
        await release
        kernel.lean = False

    def finish_top_ups(self) -> None:
        for _, fut in self.topping:
            if not fut.done():
                fut.set_result(None)

    async def execute(self, kernel: KernelHandle, code: str, sink: OutputSink) -> ExecReply:
        return ExecReply(ExecOutcome.FINISHED, "ok")

    async def interrupt(self, kernel: KernelHandle) -> None:
        return None

    async def shutdown(self, kernel: KernelHandle) -> None:
        assert isinstance(kernel, Kernel)
        kernel.dead = True
        self.shut.append(kernel)


async def filled(backend: ScriptedBackend, pool: WarmPool) -> None:
    """Let every start the pool asked for finish, until its spares are ready."""
    pool.fill()
    while pool.ready_count < pool.size:
        await until(lambda: bool(backend.pending) or pool.ready_count >= pool.size)
        backend.finish_starts()
        await until(lambda: pool.starting == 0 or pool.ready_count >= pool.size)


async def take_releasing(pool: WarmPool, backend: ScriptedBackend) -> KernelHandle:
    """Take a kernel, letting the start it may wait for finish."""
    taker = asyncio.create_task(pool.take())
    await until(lambda: taker.done() or bool(backend.pending))
    backend.finish_starts()
    return await taker


async def test_a_burst_of_new_sessions_refills_several_kernels_at_once() -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    pool = WarmPool(backend, 3, surge=3, clock=clock)
    await filled(backend, pool)
    # new sessions one by one: each gets a spare and nothing starts (the service refills after
    # that session's first run, so a start never slows it down)
    for _ in range(BURST_TAKES - 1):
        await pool.take()
        clock.advance(1.0)
        assert not backend.pending and not pool.bursting
    # the third within seconds is a burst: the last spare is handed over, and the pool starts
    # its size plus the surge at once, ahead of the sessions still to come
    await pool.take()
    assert pool.bursting
    await until(lambda: len(backend.pending) == 3 + 3)
    backend.finish_starts()
    await until(lambda: pool.ready_count == 6)
    await pool.aclose()


async def test_in_a_burst_waiters_get_kernels_and_the_surge_starts_beside_them() -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    pool = WarmPool(backend, 1, surge=2, clock=clock)
    await filled(backend, pool)
    await pool.take()
    waiters = [asyncio.create_task(pool.take()) for _ in range(BURST_TAKES - 1)]
    await until(lambda: len(backend.pending) == 1 + 2 + len(waiters))
    backend.finish_starts()
    assert len({id(k) for k in await asyncio.gather(*waiters)}) == len(waiters)
    await until(lambda: pool.ready_count == 3)
    await pool.aclose()


async def test_the_burst_ends_after_its_window_and_the_target_falls_back() -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    pool = WarmPool(backend, 1, surge=2, clock=clock)
    await filled(backend, pool)
    for _ in range(BURST_TAKES):
        await take_releasing(pool, backend)
    assert pool.bursting and pool.target == 3
    clock.advance(BURST_WINDOW_S + 1)
    assert not pool.bursting and pool.target == 1
    await pool.aclose()


async def test_sessions_spaced_out_are_not_a_burst() -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    pool = WarmPool(backend, 3, surge=3, clock=clock)
    await filled(backend, pool)
    for _ in range(3):
        await pool.take()
        clock.advance(BURST_WINDOW_S + 1)
    assert not pool.bursting and not backend.pending
    await pool.aclose()


async def test_lean_spares_are_completed_one_at_a_time_when_the_pool_is_quiet() -> None:
    backend = ScriptedBackend(lean=True)
    pool = WarmPool(backend, 3, clock=FakeClock())
    pool.fill()
    await until(lambda: len(backend.pending) == 3)
    backend.finish_starts(2)
    await until(lambda: pool.ready_count == 2)
    assert not backend.topping  # a start is still under way: no top-up yet
    backend.finish_starts()
    await until(lambda: len(backend.topping) == 1)  # then one at a time
    for n in range(1, 4):
        await until(lambda n=n: len(backend.topping) == n)
        assert sum(1 for _, fut in backend.topping if not fut.done()) == 1
        backend.finish_top_ups()
    await until(lambda: pool.complete_count == 3)
    assert pool.topped_up == 3
    await pool.aclose()


async def test_no_top_up_during_a_burst_until_it_is_over() -> None:
    clock = FakeClock()
    backend = ScriptedBackend(lean=True)
    pool = WarmPool(backend, 2, surge=2, clock=clock)
    await filled(backend, pool)
    await until(lambda: len(backend.topping) == 1)
    backend.finish_top_ups()
    await until(lambda: len(backend.topping) == 2)
    backend.finish_top_ups()
    await until(lambda: pool.complete_count == 2)
    for _ in range(BURST_TAKES):
        await take_releasing(pool, backend)
    assert pool.bursting
    topped = len(backend.topping)
    backend.finish_starts()
    await until(lambda: pool.ready_count == 4)
    assert len(backend.topping) == topped  # lean spares stay lean while the burst lasts
    clock.advance(BURST_WINDOW_S + 1)
    pool.fill()  # what the pool's timer does when the window has passed
    await until(lambda: len(backend.topping) == topped + 1)
    await pool.aclose()


async def test_a_session_gets_a_complete_spare_before_a_lean_one() -> None:
    backend = ScriptedBackend(lean=True)
    pool = WarmPool(backend, 2, clock=FakeClock())
    await filled(backend, pool)
    await until(lambda: len(backend.topping) == 1)
    first = backend.topping[0][0]
    backend.finish_top_ups()
    await until(lambda: len(backend.topping) == 2)  # the second is being completed now
    taken = await pool.take()
    assert taken is first and not taken.lean
    await pool.aclose()


async def test_a_spare_being_completed_is_handed_over_when_its_top_up_ends() -> None:
    backend = ScriptedBackend(lean=True)
    pool = WarmPool(backend, 1, clock=FakeClock())
    await filled(backend, pool)
    await until(lambda: len(backend.topping) == 1)
    taker = asyncio.create_task(pool.take())
    for _ in range(50):
        await asyncio.sleep(0)  # let the taker run as far as it can
    assert not taker.done()  # never two cells at once on one kernel
    backend.finish_top_ups()
    kernel = await taker
    assert not kernel.lean and kernel is backend.topping[0][0]
    await pool.aclose()


async def test_a_spare_that_died_is_never_handed_out() -> None:
    backend = ScriptedBackend()
    pool = WarmPool(backend, 2, clock=FakeClock())
    await filled(backend, pool)
    dead = pool._ready[0]
    assert isinstance(dead, Kernel)
    dead.dead = True
    taken = await pool.take()
    assert taken is not dead and taken.alive
    await pool.aclose()


# -- sizing --------------------------------------------------------------------------------


def plan(machine: Machine, **limits: object) -> tuple[int, int]:
    p = pool_plan(KernelLimits(**limits), machine)  # type: ignore[arg-type]
    return p.size, p.surge


def test_auto_size_is_two_spares_per_cpu_and_surge_one_per_cpu() -> None:
    assert plan(Machine(cpus=2, available_mb=20_000)) == (4, 2)
    assert plan(Machine(cpus=8, available_mb=64_000)) == (16, 8)


def test_auto_size_respects_memory() -> None:
    # a quarter of the available memory, ~SPARE_MB per spare; never fewer than one
    assert plan(Machine(cpus=2, available_mb=4 * SPARE_MB * 3)) == (3, 0)
    assert plan(Machine(cpus=8, available_mb=4 * SPARE_MB * 10)) == (10, 0)
    assert plan(Machine(cpus=8, available_mb=4 * SPARE_MB * 12)) == (12, 0)
    assert plan(Machine(cpus=4, available_mb=4 * SPARE_MB * 10)) == (8, 2)
    assert plan(Machine(cpus=2, available_mb=300)) == (1, 0)
    assert plan(Machine(cpus=64, available_mb=1_000_000)) == (32, 32)


def test_explicit_sizes_are_kept() -> None:
    tiny = Machine(cpus=1, available_mb=200)
    assert plan(tiny, pool_size=6, pool_surge=0) == (6, 0)
    assert plan(Machine(cpus=2, available_mb=20_000), pool_size=0) == (0, 2)
    assert plan(Machine(cpus=2, available_mb=20_000), pool_surge=5) == (4, 5)


def test_machine_probe_reads_memory_and_cpu_limits(tmp_path: Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable: 4096000 kB\n")
    (proc / "self" / "cgroup").write_text("0::/bot.slice\n")
    assert Machine.probe(proc, cg).available_mb == 4000  # no cgroup files: meminfo alone
    (cg / "bot.slice").mkdir(parents=True)
    (cg / "bot.slice" / "memory.max").write_text(f"{3 << 30}\n")
    (cg / "bot.slice" / "memory.current").write_text(f"{2 << 30}\n")
    (cg / "bot.slice" / "memory.stat").write_text(f"anon 1\ninactive_file {512 << 20}\n")
    (cg / "bot.slice" / "cpu.max").write_text("150000 100000\n")
    machine = Machine.probe(proc, cg)
    assert machine.available_mb == 1024 + 512  # the container's limit, page cache reclaimable
    assert machine.cpus <= 2  # 1.5 CPUs of quota


def test_machine_probe_reads_cgroup_v1(tmp_path: Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemAvailable: 16384000 kB\n")
    (proc / "self" / "cgroup").write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    mem = cg / "memory" / "docker" / "abc"
    mem.mkdir(parents=True)
    (mem / "memory.limit_in_bytes").write_text(f"{1 << 30}\n")
    (mem / "memory.usage_in_bytes").write_text(f"{256 << 20}\n")
    cpu = cg / "cpu" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    machine = Machine.probe(proc, cg)
    assert machine.available_mb == 768
    assert plan(machine) == (1, 0)  # 768 MB / 4 holds one ~128 MB spare


def test_pool_settings_accept_auto_or_a_bounded_number() -> None:
    assert KernelLimits().pool_size == "auto" and KernelLimits().pool_surge == "auto"
    assert KernelLimits(pool_size="3").pool_size == 3  # type: ignore[arg-type]
    for bad in (-1, 257, "lots"):
        with pytest.raises(ValueError):
            KernelLimits(pool_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        KernelLimits(preimports="sometimes")  # type: ignore[arg-type]


def test_auto_sessions_are_what_half_the_memory_holds() -> None:
    def sessions(machine: Machine, **limits: object) -> int:
        return pool_plan(KernelLimits(**limits), machine).sessions  # type: ignore[arg-type]

    assert sessions(Machine(cpus=2, available_mb=20_000)) == 20_000 // 2 // 128
    assert sessions(Machine(cpus=2, available_mb=1_400)) == 8  # never fewer than before
    assert sessions(Machine(cpus=2, available_mb=None)) == 8
    assert sessions(Machine(cpus=2, available_mb=1_400), max_running=12) == 12
    assert sessions(Machine(cpus=64, available_mb=10_000_000)) == 1024
    assert sessions(Machine(cpus=2, available_mb=20_000), max_sessions=5, max_running=2) == 5
    with pytest.raises(ValueError):
        KernelLimits(max_sessions=2, max_running=3)


# -- the service on the scripted backend ------------------------------------------------------


class GatedBackend(ScriptedBackend):
    """Starts at once; each execute and each shutdown waits until the test opens its gate."""

    def __init__(self) -> None:
        super().__init__()
        self.run_gate = asyncio.Event()
        self.shutdown_gate = asyncio.Event()
        self.shutting: list[KernelHandle] = []

    async def start(self, owner: str | None = None) -> KernelHandle:
        self.started += 1
        return Kernel(f"k{self.started}", lean=False)

    async def execute(self, kernel: KernelHandle, code: str, sink: OutputSink) -> ExecReply:
        await self.run_gate.wait()
        return ExecReply(ExecOutcome.FINISHED, "ok")

    async def shutdown(self, kernel: KernelHandle) -> None:
        self.shutting.append(kernel)
        await self.shutdown_gate.wait()
        await super().shutdown(kernel)


async def test_an_answer_never_waits_for_the_session_closed_to_make_room() -> None:
    backend = GatedBackend()
    limits = KernelLimits(max_sessions=1, max_running=1, pool_size=1, pool_surge=0)
    service = KernelService(limits, backend=backend, clock=FakeClock())
    await service.start()
    a = asyncio.create_task(service.run("chat:a", "user:a", "pass"))
    await until(lambda: service.info().running == 1)
    b = asyncio.create_task(service.run("chat:b", "user:b", "pass"))
    await until(lambda: service.info().queued == 1)  # the bot is full: b waits for a place
    backend.run_gate.set()
    # a's run ends; a's idle session is closed for b, but a's answer does not wait for it
    await until(lambda: a.done())
    assert a.result().status is RunStatus.OK
    await until(lambda: bool(backend.shutting))  # a's kernel is being shut down, for b
    assert backend.shutting[0].alive  # … and is not gone yet: a's answer did not wait
    backend.shutdown_gate.set()
    assert (await b).status is RunStatus.OK
    await service.aclose()
