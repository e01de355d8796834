"""cgroup v2 for sandboxed kernels: one parent for all kernels, one child per sandbox.

Only where the host delegates a cgroup v2 subtree to the bot:

- a systemd unit with ``Delegate=yes`` (systemd marks the unit's cgroup with the
  ``trusted.delegate`` / ``user.delegate`` extended attribute; with ``DelegateSubgroup=`` the
  bot lives one level below it), or
- a container with its own cgroup namespace (the bot sees ``0::/``, and that cgroup is not the
  host's root: it has a ``memory.max``).

The layout inside the delegated cgroup ``D``::

    D/cgroup.subtree_control         += memory pids cpu (the only file of D the bot writes)
    D/nbhelp-supervisor/             the bot's own processes, moved out of D if they were in it
    D/nbhelp-kernels-<botpid>/       memory.max, pids.max, cpu.max of all kernels together
    D/nbhelp-kernels-<botpid>/<id>/  one sandbox: memory.max, memory.swap.max=0, pids.max,
                                     cpu.max, memory.oom.group=1

The bot creates and removes only these directories. It never writes into a cgroup v1
hierarchy, the host's root cgroup or any cgroup that is not delegated to it; without a
delegated subtree :func:`find_delegation` returns the reason and the fallback fence applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
SUPERVISOR = "nbhelp-supervisor"
PARENT_PREFIX = "nbhelp-kernels-"
DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")
DELEGATE_HINT = (
    "run the bot under systemd with Delegate=yes (or in a container with its own cgroup "
    "namespace on a cgroup v2 host) for full limits"
)


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    memory_bytes: int
    pids: int
    cpus: float | None = None
    swap_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Delegation:
    """A cgroup v2 directory delegated to the bot, and the bot's own cgroup directory."""

    root: Path
    own: Path


@dataclass(frozen=True, slots=True)
class NoDelegation:
    reason: str


def _parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(root within the hierarchy, mount point) of each cgroup2 mount."""
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and right.split()[:1] == ["cgroup2"]:
            mounts.append((_unescape(fields[3]), _unescape(fields[4])))
    return mounts


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _is_delegated(directory: Path) -> bool:
    for name in DELEGATE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(directory, name) in (b"1", b"1\n"):
                return True
    return False


def find_delegation(
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> Delegation | NoDelegation:
    """The delegated cgroup v2 subtree the bot may use, or why there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
        mounts = _parse_mountinfo(mountinfo.read_text())
    except OSError as exc:
        return NoDelegation(f"cannot read the bot's cgroup ({exc})")
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None or not mounts:
        return NoDelegation("no cgroup v2 hierarchy is mounted")
    own: Path | None = None
    for mount_root, mount_point in mounts:
        rel = os.path.relpath(path, mount_root)
        if not rel.startswith(".."):
            own = Path(mount_point) if rel == "." else Path(mount_point) / rel
            break
    if own is None or not own.is_dir():
        return NoDelegation(f"the bot's cgroup {path} is not visible under a cgroup2 mount")
    candidates = [own]
    if path != "/":
        candidates.append(own.parent)  # DelegateSubgroup=: the bot lives one level down
    root = next((c for c in candidates if _is_delegated(c)), None)
    if root is None and path == "/" and (own / "memory.max").exists():
        root = own  # a container's cgroup namespace root: delegated by the runtime
    controllers = set(_read(own / "cgroup.controllers").split())
    missing = [c for c in CONTROLLERS if c not in controllers]
    if missing:
        return NoDelegation(
            f"the cgroup v2 hierarchy at {own} lacks the {'/'.join(missing)} controller(s) "
            "(a hybrid host binds them to cgroup v1)"
        )
    if root is None:
        return NoDelegation(f"the bot's cgroup {path} is not delegated to it")
    if not os.access(root / "cgroup.subtree_control", os.W_OK) or not os.access(
        root / "cgroup.procs", os.W_OK
    ):
        return NoDelegation(f"the delegated cgroup {root} is not writable by the bot")
    return Delegation(root=root, own=own)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class KernelCgroups:
    """The kernels' parent cgroup and one child per sandbox, inside a delegated subtree."""

    def __init__(self, delegation: Delegation, total: CgroupLimits) -> None:
        self.delegation = delegation
        self.total = total
        self.parent = delegation.root / f"{PARENT_PREFIX}{os.getpid()}"
        self._children: set[Path] = set()

    # -- file system (overridden by the fake in the unit tests) ------------------------------

    def _write(self, path: Path, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    def _mkdir(self, path: Path) -> None:
        path.mkdir(exist_ok=True)

    def _rmdir(self, path: Path) -> None:
        path.rmdir()

    # -- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Make the parent cgroup (removing those of dead bot processes first)."""
        root = self.delegation.root
        self._remove_stale()
        procs = _read(root / "cgroup.procs").split()
        if procs:
            # No internal processes: a cgroup that hands controllers to its children may not
            # hold processes itself, so the bot's own move into a leaf of their own.
            leaf = root / SUPERVISOR
            self._mkdir(leaf)
            for pid in procs:
                with contextlib.suppress(ProcessLookupError, OSError):
                    self._write(leaf / "cgroup.procs", pid)
        self._enable(root)
        self._mkdir(self.parent)
        self._apply(self.parent, self.total)
        self._enable(self.parent)

    def _enable(self, cgroup: Path) -> None:
        enabled = set(_read(cgroup / "cgroup.subtree_control").split())
        wanted = [f"+{c}" for c in CONTROLLERS if c not in enabled]
        if wanted:
            self._write(cgroup / "cgroup.subtree_control", " ".join(wanted))

    def _apply(self, cgroup: Path, limits: CgroupLimits) -> None:
        self._write(cgroup / "memory.max", str(limits.memory_bytes))
        if (cgroup / "memory.swap.max").exists():  # absent without swap accounting
            self._write(cgroup / "memory.swap.max", str(limits.swap_bytes))
        self._write(cgroup / "pids.max", str(limits.pids))
        if limits.cpus is not None:
            quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
            self._write(cgroup / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def _remove_stale(self) -> None:
        for entry in self.delegation.root.glob(f"{PARENT_PREFIX}*"):
            pid = entry.name[len(PARENT_PREFIX) :]
            if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
                continue
            for child in [c for c in entry.iterdir() if c.is_dir()]:
                self.kill(child)
                with contextlib.suppress(OSError):
                    self._rmdir(child)
            with contextlib.suppress(OSError):
                self._rmdir(entry)
            log.info("removed the kernels' cgroup %s of an earlier bot process", entry)

    # -- one sandbox -------------------------------------------------------------------------

    def create(self, name: str, limits: CgroupLimits) -> Path:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"bad cgroup name {name!r}")
        cgroup = self.parent / name
        self._mkdir(cgroup)
        self._children.add(cgroup)
        self._apply(cgroup, limits)
        self._write(cgroup / "memory.oom.group", "1")
        return cgroup

    def procs(self, cgroup: Path) -> list[int]:
        return [int(p) for p in _read(cgroup / "cgroup.procs").split() if p.isdigit()]

    def memory_current(self, cgroup: Path) -> int:
        value = _read(cgroup / "memory.current").strip()
        return int(value) if value.isdigit() else 0

    def memory_peak(self, cgroup: Path) -> int:
        value = _read(cgroup / "memory.peak").strip()
        return int(value) if value.isdigit() else self.memory_current(cgroup)

    def kill(self, cgroup: Path) -> None:
        """SIGKILL everything in the cgroup (``cgroup.kill`` where the kernel has it)."""
        if (cgroup / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                self._write(cgroup / "cgroup.kill", "1")
                return
        for _ in range(100):  # older kernels: processes may fork while we kill
            pids = self.procs(cgroup)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    async def remove(self, cgroup: Path, limit_s: float = 10.0) -> bool:
        """Kill and remove a sandbox's cgroup; False if it could not be removed in time."""
        self.kill(cgroup)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        delay = 0.002
        while True:
            try:
                self._rmdir(cgroup)
                self._children.discard(cgroup)
                return True
            except FileNotFoundError:
                self._children.discard(cgroup)
                return True
            except OSError:  # EBUSY while the killed processes exit
                if loop.time() > deadline:
                    log.warning("cgroup %s still busy after kill", cgroup)
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    async def aclose(self) -> None:
        for cgroup in list(self._children):
            await self.remove(cgroup)
        with contextlib.suppress(OSError):
            self._rmdir(self.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
