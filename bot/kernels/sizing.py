"""How many warm spare kernels this machine can afford: ``pool_size = "auto"`` and the burst surge.

:class:`Machine` is what the machine offers (usable CPUs, memory available now), read once from
``/proc`` and the process's own cgroup (a container's limit counts, not the host's);
:func:`pool_plan` turns the settings and the machine into a :class:`PoolPlan`:

- ``size`` spares are kept ready: ``2 × CPUs`` when a quarter of the available memory holds them
  (each warm kernel ~``SPARE_MB``), never fewer than one; an explicit ``pool_size`` is taken as is.
- ``surge`` more are started ahead of demand while a burst lasts (many new sessions within
  seconds): one per CPU, within the same memory budget; an explicit ``pool_surge`` as is.
- ``sessions`` may live at once (``max_sessions``): as many as half the available memory holds
  at ``SESSION_MB`` each (a workshop's students keep their kernels instead of closing each
  other's), never fewer than 8 (the fixed default before) nor than ``max_running``.

Light on purpose (no asyncio, no kernel imports): the fence sizes its cgroup from the same plan.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from bot.kernels.models import KernelLimits

# RSS of an idle kernel with numpy, pandas and matplotlib imported, rounded up (measured with
# bench/bench_kernel_start.py: RSS ~120 MB, PSS ~90 MB; a lean kernel, numpy only, ~58/40 MB).
SPARE_MB = 128
MEMORY_SHARE = 4  # spares may take at most 1/MEMORY_SHARE of the memory available at start
SPARES_PER_CPU = 2
MAX_AUTO = 32
# An idle session's kernel after a few runs (an eager one is ~120 MB RSS); sessions may take
# 1/SESSION_SHARE of the available memory.
SESSION_MB = 128
SESSION_SHARE = 2
MIN_SESSIONS = 8
MAX_AUTO_SESSIONS = 1024


@dataclass(frozen=True, slots=True)
class Machine:
    """What this machine offers kernels: usable CPUs and memory available (MB; None: unknown)."""

    cpus: int
    available_mb: int | None

    @classmethod
    def probe(
        cls, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")
    ) -> Machine:
        return cls(cpus=_cpus(proc, cgroup_root), available_mb=_available_mb(proc, cgroup_root))

    def describe(self) -> str:
        memory = (
            f"{self.available_mb / 1024:.1f} GB available"
            if self.available_mb
            else "memory unknown"
        )
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}, {memory}"


@dataclass(frozen=True, slots=True)
class PoolPlan:
    size: int  # spares kept ready
    surge: int  # further spares started ahead of demand while a burst lasts
    reason: str  # how they were chosen, for the log
    sessions: int = MIN_SESSIONS  # sessions (kernels in use) at once

    @property
    def most(self) -> int:
        """The most spares the pool ever holds (ready or starting) beyond its waiters."""
        return self.size + self.surge


def pool_plan(limits: KernelLimits, machine: Machine | None = None) -> PoolPlan:
    """Resolve ``pool_size``, ``pool_surge`` and ``max_sessions`` ("auto" or a number) for this
    machine."""
    if "auto" not in (limits.pool_size, limits.pool_surge, limits.max_sessions):
        return PoolPlan(
            int(limits.pool_size),
            int(limits.pool_surge),
            "set in the settings",
            int(limits.max_sessions),
        )
    machine = machine or Machine.probe()
    by_cpu = SPARES_PER_CPU * machine.cpus
    if machine.available_mb is None:
        affordable = by_cpu + machine.cpus  # unknown memory: the CPU rule alone
    else:
        affordable = machine.available_mb // MEMORY_SHARE // SPARE_MB
    if limits.pool_size == "auto":
        size = max(1, min(by_cpu, affordable, MAX_AUTO))
    else:
        size = limits.pool_size
    if limits.pool_surge == "auto":
        surge = max(0, min(machine.cpus, affordable - size, MAX_AUTO))
    else:
        surge = limits.pool_surge
    if limits.max_sessions == "auto":
        held = (machine.available_mb or 0) // SESSION_SHARE // SESSION_MB
        sessions = max(MIN_SESSIONS, limits.max_running, min(held, MAX_AUTO_SESSIONS))
    else:
        sessions = limits.max_sessions
    return PoolPlan(size, surge, f"auto: {machine.describe()}", sessions)


def _cpus(proc: Path, cgroup_root: Path) -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cpu_quota(proc, cgroup_root)
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return max(1, count)


def _cgroup_dirs(proc: Path, cgroup_root: Path, controller: str) -> list[Path]:
    """This process's cgroup directories for ``controller`` (v1) and the unified one (v2),
    falling back to the mount's root (a container whose cgroup namespace hides the path)."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for line in (proc / "self" / "cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            rel = path.lstrip("/")
            if number == "0" and controllers == "":
                found += [cgroup_root / rel, cgroup_root]
            elif controller in controllers.split(","):
                base = cgroup_root / controller
                found += [base / rel, base]
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_quota(proc: Path, cgroup_root: Path) -> float | None:
    for d in _cgroup_dirs(proc, cgroup_root, "cpu"):
        text = _read(d / "cpu.max")
        if text is not None:
            quota, _, period = text.partition(" ")
            if quota != "max" and quota.isdigit() and period.isdigit() and int(period):
                return int(quota) / int(period)
            if quota == "max":
                return None
        quota_us, period_us = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        if quota_us is not None and period_us is not None:
            with contextlib.suppress(ValueError, ZeroDivisionError):
                q = int(quota_us)
                return None if q < 0 else q / int(period_us)
    return None


def _inactive_file(cgroup: Path) -> int:
    for line in (_read(cgroup / "memory.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key in ("inactive_file", "total_inactive_file") and value.isdigit():
            return int(value)
    return 0


def _available_mb(proc: Path, cgroup_root: Path) -> int | None:
    available: int | None = None
    text = _read(proc / "meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            with contextlib.suppress(ValueError, IndexError):
                available = int(line.split()[1]) // 1024
    for d in _cgroup_dirs(proc, cgroup_root, "memory"):
        limit = _read(d / "memory.max") or _read(d / "memory.limit_in_bytes")
        usage = _read(d / "memory.current") or _read(d / "memory.usage_in_bytes")
        if limit is None or usage is None:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:
            used = int(usage) - _inactive_file(d)  # page cache the kernel can drop on demand
            left = max(0, int(limit) - max(0, used)) >> 20
            available = left if available is None else min(available, left)
        break
    return available
