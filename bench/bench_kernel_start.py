"""Where a sandboxed kernel's cold start spends its CPU, eager vs lazy pre-imports, and memory.

    .venv/bin/python bench/bench_kernel_start.py [--quick]

Measured side by side in one run on this machine, with the real sandbox (bwrap, seccomp, the
root-mode launcher when run as root):

- the parts of a start, as CPU seconds: the launcher + setpriv + bwrap (the sandbox's outer
  processes), the interpreter, ipykernel's imports, each pre-import (numpy, pandas, pyplot and
  its inline backend, in the kernel's own order), ipykernel's set-up, the warm-up cell;
- a whole start, eager (numpy, pandas, matplotlib before the kernel is offered) and lazy (numpy
  only; the rest on first use or in the pool's top-up), plus the top-up itself;
- memory of an idle kernel: RSS and PSS (``smaps_rollup``: shared pages split between the
  processes that map them) of the kernel process and of its whole sandbox;
- starts in parallel (1, 2, 4 at a time): kernels per second on this machine;
- what a fork server would save (a fork of an interpreter with everything imported): measured
  for the record only — it is not built (see docs/sandbox.md, "Why no fork server").

CPU times come from /proc (10 ms ticks) and ``time.process_time``; they include contention
when the machine is shared, which is why each figure is a median and eager/lazy run alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.kernels import KernelLimits
from bot.kernels.jupyter import JupyterConnection
from bot.kernels.local import WARM_UP, LocalBackend
from bot.kernels.process import LocalKernel

TICK = os.sysconf("SC_CLK_TCK")

STAGES = r"""
import json, time
T = {"interpreter": time.process_time()}
def mark(name):
    T[name] = time.process_time()
import jupyter_client.session, ipykernel.iostream
from ipykernel.kernelapp import IPKernelApp
import ipykernel.ipkernel, ipykernel.zmqshell
mark("ipykernel imports")
import numpy
mark("numpy")
import pandas
mark("pandas")
import matplotlib.pyplot
import matplotlib_inline.backend_inline
mark("matplotlib.pyplot + inline")
print(json.dumps(T))
"""

FORK = r"""
import json, os, time
import numpy, pandas, matplotlib.pyplot
walls = []
for _ in range(20):
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    walls.append(time.perf_counter() - t)
walls.sort()
print(json.dumps({"fork_ms": walls[len(walls) // 2] * 1000}))
"""


def cpu_s(pid: int) -> float:
    """utime + stime + reaped children's, of one host process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def memory_mb(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def med(xs: list[float]) -> float:
    return statistics.median(xs)


async def stages(backend: LocalBackend, n: int) -> dict[str, float]:
    rows = []
    for _ in range(n):
        code, out, err = await backend.run_script(STAGES)
        assert code == 0, err.decode()[-500:]
        rows.append(json.loads(out))
    steps: dict[str, float] = {}
    previous = 0.0
    for key in rows[0]:
        cumulative = med([r[key] for r in rows])
        steps[key] = cumulative - previous
        previous = cumulative
    return steps


async def one_start(backend: LocalBackend) -> dict[str, float]:
    """A start like LocalBackend._start, with the sandbox's CPU read at each step."""
    bot0, wall0 = time.process_time(), time.perf_counter()
    kernel, info = await backend.launch(secrets.token_hex(32))
    outer = [kernel.proc.pid, *kernel.host_pids()[:1]]  # launcher→setpriv→bwrap, bwrap's init

    def sandbox() -> float:
        return sum(cpu_s(p) for p in [kernel.proc.pid, *kernel.host_pids()])

    listening = sandbox()
    kernel.conn = JupyterConnection(info, max_msg_bytes=backend.max_msg_bytes())
    kernel.conn.connect()
    await kernel.conn.wait_ready()
    ready = sandbox()
    await kernel.conn.execute(WARM_UP, lambda o, s: None, count=False)
    warm = sandbox()
    row = {
        "launcher + bwrap": sum(cpu_s(p) for p in outer),
        "until sockets listen": listening,
        "until kernel_info reply": ready,
        "warm-up cell": warm - ready,
        "total": warm,
        "bot side": time.process_time() - bot0,
        "wall": time.perf_counter() - wall0,
    }
    kernel.lean = backend.limits.preimports == "lazy"
    if kernel.lean:
        before = sandbox()
        await backend.top_up(kernel)
        row["top-up"] = sandbox() - before
    pid = kernel.host_pids()[-1]
    row["rss"], row["pss"] = memory_mb(pid)
    sandbox_mem = [memory_mb(p) for p in kernel.host_pids()]
    row["sandbox rss"] = sum(r for r, _ in sandbox_mem)
    row["sandbox pss"] = sum(p for _, p in sandbox_mem)
    await backend.shutdown(kernel)
    return row


async def lean_memory(backend: LocalBackend) -> tuple[float, float]:
    kernel = await backend.start()
    assert isinstance(kernel, LocalKernel)
    rss, pss = memory_mb(kernel.host_pids()[-1])
    await backend.shutdown(kernel)
    return rss, pss


async def parallel(limits: KernelLimits, at_once: int, n: int) -> float:
    """Kernels per second when ``n`` start together, ``at_once`` at a time."""
    backend = LocalBackend(limits, max_concurrent_starts=at_once)
    await backend.check()
    t = time.perf_counter()
    kernels = await asyncio.gather(*(backend.start() for _ in range(n)))
    rate = n / (time.perf_counter() - t)
    for k in kernels:
        await backend.shutdown(k)
    await backend.aclose()
    return rate


async def main(quick: bool) -> int:
    n = 3 if quick else 7
    eager_limits = KernelLimits(preimports="eager")
    lazy_limits = KernelLimits(preimports="lazy")
    eager = LocalBackend(eager_limits)
    lazy = LocalBackend(lazy_limits)
    await eager.check()
    await lazy.check()
    print(
        f"kernel cold start  (cpus={os.cpu_count()}, load {os.getloadavg()[0]:.1f}, "
        f"{'root mode' if eager.root_mode else 'unprivileged'}, {os.geteuid()=})"
    )
    for line in eager.fence_description():
        print(f"  fence: {line}")

    parts = await stages(eager, n)
    rows: dict[str, list[dict[str, float]]] = {"eager": [], "lazy": []}
    for _ in range(n):  # alternate, so both see the same load
        rows["eager"].append(await one_start(eager))
        rows["lazy"].append(await one_start(lazy))
    lean_rss, lean_pss = await lean_memory(lazy)
    fork_code, fork_out, _ = await eager.run_script(FORK)
    fork_ms = json.loads(fork_out)["fork_ms"] if fork_code == 0 else float("nan")
    await eager.aclose()
    await lazy.aclose()

    def m(mode: str, key: str) -> float:
        return med([r[key] for r in rows[mode]])

    print(f"\n  parts of a start (CPU s, median of {n}; imports measured in a sandboxed python -c)")
    print(
        f"    {'launcher + setpriv + bwrap (outer processes)':<46} {m('eager', 'launcher + bwrap'):6.3f}"
    )
    for name, value in parts.items():
        print(f"    {name:<46} {value:6.3f}")
    print(
        f"    {'ipykernel set-up (rest, eager kernel)':<46} "
        f"{m('eager', 'until kernel_info reply') - m('eager', 'launcher + bwrap') - sum(parts.values()):6.3f}"
    )
    print(f"    {'warm-up cell':<46} {m('eager', 'warm-up cell'):6.3f}")
    print(f"    {'bot side (spawn, ZMQ, waiting)':<46} {m('eager', 'bot side'):6.3f}")

    print(f"\n  {'whole start':<34} {'eager':>9} {'lazy':>9}")
    for key in ("until sockets listen", "until kernel_info reply", "total", "wall"):
        unit = "s wall" if key == "wall" else "s CPU"
        print(f"    {key + ' (' + unit + ')':<32} {m('eager', key):9.3f} {m('lazy', key):9.3f}")
    print(f"    {'lazy / eager CPU':<32} {'':>9} {m('lazy', 'total') / m('eager', 'total'):8.2f}x")
    print(f"    {'top-up of a lean spare (s CPU)':<32} {'':>9} {m('lazy', 'top-up'):9.3f}")

    print("\n  memory of an idle kernel (MB)        RSS      PSS   sandbox RSS  sandbox PSS")
    print(
        f"    {'eager':<32} {m('eager', 'rss'):8.0f} {m('eager', 'pss'):8.0f} "
        f"{m('eager', 'sandbox rss'):12.0f} {m('eager', 'sandbox pss'):12.0f}"
    )
    print(
        f"    {'lazy, completed by the top-up':<32} {m('lazy', 'rss'):8.0f} {m('lazy', 'pss'):8.0f} "
        f"{m('lazy', 'sandbox rss'):12.0f} {m('lazy', 'sandbox pss'):12.0f}"
    )
    print(f"    {'lazy, lean (numpy only)':<32} {lean_rss:8.0f} {lean_pss:8.0f}")

    count = 4 if quick else 8
    print(f"\n  {count} kernels started together (kernels/s, wall)")
    for at_once in (1, 2, 4):
        rate = await parallel(lazy_limits, at_once, count)
        print(f"    lazy,  {at_once} at a time {rate:8.2f}")
    rate = await parallel(eager_limits, 2, count)
    print(f"    eager, 2 at a time {rate:8.2f}")

    print("\n  not built: a fork server (zygote with everything imported)")
    print(
        f"    fork + exit + wait of a pre-imported interpreter: {fork_ms:.1f} ms wall, against "
        f"{m('eager', 'total'):.2f} s CPU per eager start"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    raise SystemExit(asyncio.run(main(parser.parse_args().quick)))
