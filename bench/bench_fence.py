"""Benchmark of the resource fence (issue 10): its cost on a cold start, and what it holds.

Run with ``.venv/bin/python bench/bench_fence.py`` (``--quick`` for fewer repetitions).
Measured side by side in one process on this machine:

- cold kernel start (start + first warm-up cell + shutdown), alternating between a backend
  with the full fence (seccomp filter, cgroup where delegated, staged file space/devpts) and
  one with the seccomp filter and cgroups turned off: the per-start overhead, printed as a
  share of the unfenced cold start (target: under 10 %);
- the one-time cost of compiling the seccomp policy;
- the issue's memory attacks (memfd, SysV shm kept after detaching, children left running,
  empty files) in one fenced sandbox each: the most memory charged to that sandbox while the
  attack ran (sampled every 20 ms: anonymous + shared memory of its processes, its file space,
  ~1 kB per inode; or the cgroup's memory.peak), against its limit (target: never above the
  limit + 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.kernels import KernelLimits, KernelService, LocalBackend
from bot.kernels import fence as fc
from bot.kernels.fence_settings import FenceSettings
from bot.kernels.process import LocalKernel
from bot.kernels.seccomp import compile_policy

LIMITS = KernelLimits(pool_size=0, max_running=2, max_sessions=4, wall_s=20, runs_per_minute=1000)

ATTACKS = {
    "memfd 24 x 60 MB": (
        "import os\nheld = []\n"
        "for i in range(24):\n"
        "    fd = os.memfd_create(f'm{i}')\n"
        "    os.posix_fallocate(fd, 0, 60 << 20)\n"
        "    held.append(fd)"
    ),
    "SysV shm 24 x 60 MB, detached": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.shmat.restype = ctypes.c_void_p\n"
        "for i in range(24):\n"
        "    sid = libc.shmget(0, 60 << 20, 0o1600)\n"
        "    if sid < 0:\n"
        "        raise OSError(ctypes.get_errno(), 'shmget')\n"
        "    addr = libc.shmat(sid, None, 0)\n"
        "    ctypes.memset(addr, 1, 60 << 20)\n"
        "    libc.shmdt(ctypes.c_void_p(addr))"
    ),
    "3 children x 500 MB": (
        "import subprocess, sys\n"
        "hog = 'x = bytearray(500 << 20)\\nprint(1, flush=True)\\nimport time\\ntime.sleep(600)'\n"
        "kids = [subprocess.Popen([sys.executable, '-c', hog], stdout=subprocess.PIPE)"
        " for _ in range(3)]\n"
        "[k.stdout.readline() for k in kids]\nprint('children hold their memory')"
    ),
    "200k empty files": (
        "import os\nos.makedirs('many', exist_ok=True)\n"
        "for i in range(200_000):\n    open(f'many/{i}', 'w').close()"
    ),
}


async def cold_start(backend: LocalBackend) -> float:
    t = time.perf_counter()
    kernel = await backend.start()
    elapsed = time.perf_counter() - t
    await backend.shutdown(kernel)
    return elapsed


async def starts(n: int) -> None:
    fenced = LocalBackend(LIMITS, preimport=True)
    plain = LocalBackend(LIMITS, preimport=True, fence=FenceSettings(seccomp=False, cgroup="off"))
    await fenced.check()
    await plain.check()
    await cold_start(fenced)  # warm the page cache for both
    await cold_start(plain)
    with_fence: list[float] = []
    without: list[float] = []
    for _ in range(n):
        with_fence.append(await cold_start(fenced))
        without.append(await cold_start(plain))
    t = time.perf_counter()
    compile_policy(memory_cgroup=False)
    compile_ms = (time.perf_counter() - t) * 1000
    a, b = statistics.median(with_fence), statistics.median(without)
    print(f"cold kernel start, median of {n} alternating starts (numpy/pandas/matplotlib):")
    print(f"  without seccomp+cgroup: {b * 1000:7.0f} ms")
    print(f"  with the fence:         {a * 1000:7.0f} ms")
    print(f"  overhead per start:     {(a - b) * 1000:+7.0f} ms = {(a - b) / b * 100:+.1f} %")
    print(f"  seccomp policy compiled once per backend: {compile_ms:.1f} ms")
    assert fenced.fence is not None
    print("fences active here:")
    for line in fenced.fence_description():
        print(f"  {line}")
    await fenced.aclose()
    await plain.aclose()


async def attacks() -> None:
    limit = LIMITS.memory_mb << 20
    service = KernelService(LIMITS)
    await service.start()
    print(f"memory charged to one sandbox under attack (limit {LIMITS.memory_mb} MB):")
    for name, code in ATTACKS.items():
        key = f"bench:{name}"
        await service.run(key, key, "pass")
        kernel = service._sessions[key].kernel
        assert isinstance(kernel, LocalKernel) and kernel.root_pid is not None
        root_pid = kernel.root_pid
        peaks = [0]
        done = asyncio.Event()

        async def sample(root: int, peaks: list[int], done: asyncio.Event) -> None:
            while not done.is_set():
                memory = await asyncio.to_thread(fc.sandbox_memory, root, "/home/user")
                peaks.append(memory.total)
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample(root_pid, peaks, done))
        result = await service.run(key, key, code)
        peak = max(peaks)
        if kernel.cgroup is not None and service._backend.fence is not None:
            cgroups = service._backend.fence.cgroups
            assert cgroups is not None
            peak = max(peak, cgroups.memory_peak(kernel.cgroup))
        done.set()
        await sampler
        note = (result.notices or (result.text.strip().splitlines() or [""])[-1:])[0]
        verdict = "ok" if peak <= limit * 1.1 else "OVER"
        print(
            f"  {name:32s} peak {peak / 2**20:6.0f} MB = {peak / limit * 100:5.1f} % of limit "
            f"[{verdict}]  {result.status.value}: {note[:70]}"
        )
        await service.reset(key)
    await service.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    await starts(3 if args.quick else 8)
    await attacks()


if __name__ == "__main__":
    asyncio.run(main())
