"""Kernels and run directories left behind by a bot that was killed (SIGKILL, OOM, power).

Each bot process makes its own run directory (``nbhelp-run-*``) and writes ``owner.json`` in it:
its pid and the pid's start time, so a reused pid is not mistaken for the owner. At start-up a
backend sweeps the base directory: a run directory whose owner is gone is ours to clean. Its
sandboxes are found by their command lines, which name files inside that directory (bwrap's
binds); only those processes are killed, then the directory is removed. Directories of a live
owner (another bot, a running ``ask``) are never touched.
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


def processes_using(run_dir: Path, proc: Path = PROC) -> list[int]:
    """Host pids whose command line names a path inside ``run_dir`` (its sandboxes)."""
    needle = (str(run_dir).rstrip("/") + "/").encode()
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry.name))
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
        for pid in processes_using(run_dir, proc):
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
