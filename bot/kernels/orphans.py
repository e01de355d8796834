"""Kernels and run directories left behind by a bot that was killed (SIGKILL, OOM, power).

Each bot process makes its own run directory (``nbhelp-run-*``) and writes ``owner.json`` in it:
its pid and the pid's start time, so a reused pid is not mistaken for the owner. Each kernel's
directory records the host pids of its sandbox (``pids.json``: bwrap and the sandbox's PID 1,
each with its start time) as soon as they are known. At start-up a backend sweeps the base
directory: a run directory whose owner is gone is ours to clean. Only recorded processes whose
start time still matches are killed (killing PID 1 of a sandbox ends its whole PID namespace),
then the directory is removed. Directories of a live owner (another bot, a running ``ask``)
are never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = "nbhelp-run-"
OWNER_FILE = "owner.json"
PIDS_FILE = "pids.json"
PROC = Path("/proc")


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it does not exist."""
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of the whole line
    except (OSError, IndexError, ValueError):
        return None


def write_owner(run_dir: Path, pid: int | None = None) -> None:
    pid = os.getpid() if pid is None else pid
    (run_dir / OWNER_FILE).write_text(json.dumps({"pid": pid, "start": start_ticks(pid)}))


def owner_alive(run_dir: Path, proc: Path = PROC) -> bool | None:
    """True/False when ``owner.json`` says; None when the directory has none (not ours)."""
    try:
        owner = json.loads((run_dir / OWNER_FILE).read_text())
        pid, start = int(owner["pid"]), owner.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = start_ticks(pid, proc)
    return now is not None and (start is None or now == start)


def record(kernel_dir: Path, pids: list[int], proc: Path = PROC) -> None:
    """Remember a sandbox's host pids (with their start times) in its kernel directory."""
    entries = [{"pid": pid, "start": start_ticks(pid, proc)} for pid in pids]
    tmp = kernel_dir / f".{PIDS_FILE}.tmp"
    tmp.write_text(json.dumps(entries))
    tmp.replace(kernel_dir / PIDS_FILE)


def recorded_processes(run_dir: Path, proc: Path = PROC) -> list[int]:
    """Recorded sandbox pids under ``run_dir`` that still run the same process."""
    pids = []
    for path in run_dir.glob(f"*/{PIDS_FILE}"):
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for entry in entries if isinstance(entries, list) else []:
            try:
                pid, start = int(entry["pid"]), entry.get("start")
            except (KeyError, TypeError, ValueError):
                continue
            if pid != os.getpid() and start is not None and start_ticks(pid, proc) == start:
                pids.append(pid)
    return pids


@dataclass(frozen=True, slots=True)
class Swept:
    directories: int
    processes: int


def sweep(base: Path, proc: Path = PROC) -> Swept:
    """Kill the sandboxes of dead owners and remove their run directories."""
    dirs = killed = 0
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    except OSError:
        return Swept(0, 0)
    for run_dir in candidates:
        if owner_alive(run_dir, proc) is not False:
            continue  # a live owner, or not a directory we can vouch for
        for pid in recorded_processes(run_dir, proc):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        shutil.rmtree(run_dir, ignore_errors=True)
        dirs += 1
    if dirs:
        log.warning(
            "removed %d run director%s of a bot that was killed, and %d sandbox process(es)",
            dirs,
            "y" if dirs == 1 else "ies",
            killed,
        )
    return Swept(dirs, killed)
