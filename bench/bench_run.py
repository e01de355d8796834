"""Benchmark of /run: the kernel service against its floor and against cold alternatives.

Run with ``.venv/bin/python bench/bench_run.py`` (``--quick`` for fewer repetitions). Everything
is measured side by side in one process on this machine:

- floor: raw jupyter_client ``execute_interactive`` on an already-warm plain (unsandboxed)
  kernel;
- warm: ``KernelService.run`` on a warm session (what ``/run`` does below the chat layer);
- cold kernel: a sandboxed kernel started per snippet (start + run + shutdown);
- fresh process: a sandboxed ``python -c`` per snippet (the plot one writes the PNG to stdout);

each for ``print(1)`` and for a matplotlib line plot returned as PNG; then the first run of a
new session from the warm pool, 8 users x 10 snippets with the default limits, and memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_client.manager import AsyncKernelManager

from bot.kernels import KernelLimits, KernelService, LocalBackend, RunStatus
from bot.kernels.process import LocalKernel

PRINT = "print(1)"
PLOT = "plt.figure(figsize=(4, 3))\nplt.plot([1, 3, 2, 4])\nplt.title('bench');"
PLOT_FLOOR = "import matplotlib.pyplot as plt\n" + PLOT
PLOT_FRESH = (
    "import sys, io, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    + PLOT
    + "\nb = io.BytesIO(); plt.savefig(b, format='png'); sys.stdout.buffer.write(b.getvalue())"
)
PNG = b"\x89PNG"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def timed(fn: Callable[[], Awaitable[object]], n: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def floor(n: int) -> tuple[list[float], list[float], int]:
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    seen: dict[str, int] = {"png": 0}

    def hook(msg: dict) -> None:
        if "image/png" in msg.get("content", {}).get("data", {}):
            seen["png"] += 1

    try:
        await kc.execute_interactive(PLOT_FLOOR, output_hook=hook, timeout=60)  # import + warm
        text = await timed(lambda: kc.execute_interactive(PRINT, output_hook=hook), n, warmup=3)
        plot = await timed(lambda: kc.execute_interactive(PLOT, output_hook=hook), n // 2 + 1)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    return text, plot, seen["png"]


async def service_warm(service: KernelService, n: int) -> tuple[list[float], list[float]]:
    async def run(code: str) -> None:
        result = await service.run("bench-warm", "bench-user", code)
        assert result.status is RunStatus.OK, result
        if code == PLOT:
            assert result.images and result.images[0].startswith(PNG), result

    text = await timed(lambda: run(PRINT), n, warmup=3)
    plot = await timed(lambda: run(PLOT), n // 2 + 1)
    return text, plot


async def first_runs(service: KernelService, n: int) -> list[float]:
    out = []
    for i in range(n):
        await service.wait_until_warm(complete=True)  # an idle machine's spares: complete
        t = time.perf_counter()
        result = await service.run(f"bench-new-{i}", "bench-user", PRINT)
        out.append(time.perf_counter() - t)
        assert result.status is RunStatus.OK, result
        await service.reset(f"bench-new-{i}")
    return out


async def cold_kernel(backend: LocalBackend, code: str, n: int) -> list[float]:
    async def once() -> None:
        images = []
        kernel = await backend.start()
        await backend.execute(kernel, code, lambda o, _: images.append(o))
        await backend.shutdown(kernel)
        assert images

    return await timed(once, n, warmup=0)


async def fresh_process(backend: LocalBackend, code: str, n: int) -> list[float]:
    async def once() -> None:
        returncode, out, _ = await backend.run_script(code)
        assert returncode == 0 and (out.startswith(PNG) or out.strip() == b"1"), out[:40]

    return await timed(once, n, warmup=1)


async def crowd(users: int, snippets: int) -> tuple[list[float], int, int, float]:
    """``users`` concurrent users, each sending ``snippets`` runs one after another."""
    service = KernelService(KernelLimits())
    await service.start()
    await service.wait_until_warm()
    latencies: list[float] = []
    failures = 0

    async def user(u: int) -> None:
        nonlocal failures
        for i in range(snippets):
            code = PLOT if i % 5 == 4 else f"x = {i} * {u}\nprint(x, sum(range(10)))"
            t = time.perf_counter()
            result = await service.run(f"crowd-{u}", f"user-{u}", code)
            latencies.append(time.perf_counter() - t)
            if result.status is not RunStatus.OK:
                failures += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(user(u) for u in range(users)))
    wall = time.perf_counter() - t0
    await service.aclose()
    return latencies, len(latencies), failures, wall


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def row(name: str, xs: list[float]) -> str:
    return f"  {name:<44} {median(xs) * 1000:9.1f} {p95(xs) * 1000:9.1f} {len(xs):5d}"


async def through_core(n: int) -> tuple[list[float], list[float], list[float]]:
    """``/run`` as a chat user sends it: parse, handler, kernel, reply model, Telegram HTML."""
    import tempfile

    from bot.core.models import Inbound
    from bot.core.render import TelegramRenderer
    from bot.settings import Settings
    from bot.wiring import build_core

    renderer = TelegramRenderer()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            db=Path(tmp) / "bench.db", run={"runs_per_minute": 100_000}, _env_file=None
        )  # type: ignore[call-arg]
        core = build_core(settings)
        router = core.ctx.service("kernels")
        kernels = getattr(router, "plain", None)  # the router's plain target (issue 12)
        kernels = kernels.service if kernels is not None else router
        assert isinstance(kernels, KernelService), kernels
        await kernels.wait_until_warm(complete=True)
        counter = iter(range(1_000_000))

        def send(code: str, user: str = "core") -> Callable[[], Awaitable[object]]:
            async def go() -> object:
                reply = await core.handle(Inbound("bench", "chat", user, user, "run", code))
                return renderer.render(reply)

            return go

        try:
            text = await timed(send("print(1)"), n)
            plot = await timed(send(PLOT), max(10, n // 2))
            # first /run of a new session, served from the warm pool
            first: list[float] = []
            for _ in range(max(5, n // 4)):
                await kernels.wait_until_warm(complete=True)
                first += await timed(send("print(1)", f"new-{next(counter)}"), 1, warmup=0)
        finally:
            await core.aclose()
    return text, plot, first


async def main(quick: bool) -> int:
    n = 15 if quick else 40
    n_cold = 3 if quick else 6
    limits = KernelLimits(runs_per_minute=100_000, pool_size=2)
    service = KernelService(limits)
    await service.start()
    await service.wait_until_warm()
    backend = service._backend
    assert isinstance(backend, LocalBackend)

    print(f"nbhelp /run benchmark  (cpus={os.cpu_count()}, backend={service.info().backend})")
    floor_text, floor_plot, floor_pngs = await floor(n)
    warm_text, warm_plot = await service_warm(service, n)
    first = await first_runs(service, max(5, n // 4))
    cold_text = await cold_kernel(backend, PRINT, n_cold)
    cold_plot = await cold_kernel(backend, PLOT, n_cold)
    fresh_text = await fresh_process(backend, "print(1)", n_cold + 2)
    fresh_plot = await fresh_process(backend, PLOT_FRESH, n_cold + 2)

    await service.wait_until_warm()
    session_kernel = service._sessions["bench-warm"].kernel
    assert isinstance(session_kernel, LocalKernel)
    kernel_pids = session_kernel.host_pids()
    kernel_rss = max(rss_mb(p) for p in kernel_pids)
    sandbox_rss = sum(rss_mb(p) for p in kernel_pids)
    spare_rss = [max(rss_mb(p) for p in k.host_pids()) for k in service._pool._ready]
    service_rss = rss_mb(os.getpid())
    await service.aclose()

    latencies, done, failures, wall = await crowd(8, 10)
    core_text, core_plot, core_first = await through_core(n)

    print(f"\n  {'print(1)':<44} {'median ms':>9} {'p95 ms':>9} {'n':>5}")
    print(row("floor: jupyter_client, warm plain kernel", floor_text))
    print(row("service.run, warm session", warm_text))
    print(row("service.run, first run of a new session", first))
    print(row("/run via the core (handler + HTML), warm", core_text))
    print(row("/run via the core, first run of a new session", core_first))
    print(row("cold sandboxed kernel per snippet", cold_text))
    print(row("fresh sandboxed python -c per snippet", fresh_text))
    print(f"\n  {'matplotlib line plot -> PNG':<44} {'median ms':>9} {'p95 ms':>9} {'n':>5}")
    print(row("floor: jupyter_client, warm plain kernel", floor_plot))
    print(row("service.run, warm session", warm_plot))
    print(row("/run via the core (handler + HTML), warm", core_plot))
    print(row("cold sandboxed kernel per snippet", cold_plot))
    print(row("fresh sandboxed python -c per snippet", fresh_plot))
    print("\n  8 users x 10 snippets (default limits, pool of 2, concurrent users)")
    print(
        f"    completed {done}/80, failed {failures}, wall {wall:.2f} s, "
        f"p50 {median(latencies) * 1000:.0f} ms, p95 {p95(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print("\n  memory (RSS)")
    print(f"    one warm kernel with numpy/pandas/matplotlib imported: {kernel_rss:.0f} MB")
    print(f"    whole sandbox (bwrap PID 1 + kernel): {sandbox_rss:.0f} MB")
    if spare_rss:
        print(f"    idle spare kernels: {', '.join(f'{r:.0f} MB' for r in spare_rss)}")
    print(f"    service (bot) process: {service_rss:.0f} MB")

    checks = [
        (
            "warm /run (core) median within 1.3x the floor",
            median(core_text) <= 1.3 * median(floor_text),
            f"{median(core_text) / median(floor_text):.2f}x",
        ),
        (
            "warm plot (core) median < 0.25 s",
            median(core_plot) < 0.25,
            f"{median(core_plot):.3f} s",
        ),
        (
            "warm plot (core) >= 4x faster than a fresh process",
            median(fresh_plot) >= 4 * median(core_plot),
            f"{median(fresh_plot) / median(core_plot):.1f}x",
        ),
        (
            "first /run of a new session within 2x a warm run",
            median(core_first) <= 2 * median(core_text),
            f"{median(core_first) / median(core_text):.2f}x",
        ),
        ("8 x 10 snippets all completed, none lost", done == 80 and failures == 0, f"{done}/80"),
        ("warm kernel RSS < 150 MB", kernel_rss < 150, f"{kernel_rss:.0f} MB"),
        ("floor kernel produced PNGs", floor_pngs > 0, f"{floor_pngs}"),
    ]
    print()
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<50} {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
