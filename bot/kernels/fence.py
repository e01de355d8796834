"""The resource fence around each sandbox: what is active on this host, and its moving parts.

- :func:`prepare` decides once per backend which fences this host allows (seccomp filter,
  cgroup v2 or the per-process fallback, staged mounts in root mode) and returns a
  :class:`Fence` whose :meth:`Fence.describe` says so in words (for the log and ``/run --info``).
- :class:`Handoff` carries everything bwrap reads from file descriptors: its whole command line
  (``--args``, so the sandbox's PID 1 shows ``bwrap --args N`` and no host path), the seccomp
  program, and the small files bound into the sandbox (``--ro-bind-data``, whose mount-table
  entry names no host path either).
- Neutral paths: in root mode the interpreter and the virtualenv appear at ``/opt/python`` and
  ``/opt/venv``; :func:`build_patch` writes the overlay layer that re-points the venv there.
- :func:`kill_strays` stops the processes a run left behind (everything in the sandbox except
  its PID 1 and the kernel), and :func:`sandbox_memory` measures what one sandbox holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bot.kernels.cgroups import (
    CgroupLimits,
    Delegation,
    KernelCgroups,
    NoDelegation,
    find_delegation,
)
from bot.kernels.fence_settings import FenceSettings
from bot.kernels.models import KernelLimits
from bot.kernels.seccomp import SeccompProgram, SeccompUnavailable, compile_policy
from bot.kernels.sizing import pool_plan

log = logging.getLogger(__name__)

LAUNCHER = (Path(__file__).parent / "launcher.py").read_text()
KERNEL_PID_INSIDE = 2  # bwrap's init is PID 1 of the sandbox, the command it runs is PID 2


# -- what is active --------------------------------------------------------------------------


@dataclass
class Fence:
    """The fences one backend applies to every sandbox it starts."""

    settings: FenceSettings
    limits: KernelLimits
    root_mode: bool
    seccomp: SeccompProgram | None = None
    cgroups: KernelCgroups | None = None
    cgroup_reason: str = ""
    gpu_note: str | None = None

    @property
    def memory_cgroup(self) -> bool:
        return self.cgroups is not None

    @property
    def staged(self) -> bool:
        """Whether the launcher stages mounts (overlays, capped tmpfs, devpts): root mode."""
        return self.root_mode

    @property
    def ptys(self) -> int:
        return self.settings.max_ptys if self.root_mode else 0

    def sandbox_cgroup_limits(self) -> CgroupLimits:
        return CgroupLimits(
            memory_bytes=self.limits.memory_mb << 20,
            pids=self.limits.max_processes,
            cpus=self.settings.cpus_per_kernel,
        )

    def memory_line(self) -> str:
        if self.cgroups is not None:
            return (
                f"memory fence: cgroup v2 ({self.limits.memory_mb} MB per sandbox, all memory "
                "counted: shared memory, tmpfs, kernel memory, children)"
            )
        return (
            "memory fence: per-process limits — run under systemd with Delegate=yes for full limits"
        )

    def describe(self) -> tuple[str, ...]:
        """One line per fence, e.g. for ``/run --info`` and the start-up log."""
        lim = self.limits
        lines = [self.memory_line()]
        if self.cgroups is not None:
            lines.append(
                f"processes: cgroup pids.max {lim.max_processes}; CPU: cgroup cpu.max "
                f"{self.settings.cpus_per_kernel:g} CPU per sandbox"
            )
        else:
            lines.append(
                f"processes: RLIMIT_NPROC {lim.max_processes} threads+processes "
                f"{'per sandbox uid' if self.root_mode else 'shared by all kernels (bot not root)'}"
                f", each under RLIMIT_AS {lim.memory_mb} MB; CPU: RLIMIT_CPU per process"
            )
        if self.seccomp is not None:
            extra = " incl. memfd and SysV IPC" if self.seccomp.memory_rules else ""
            lines.append(f"syscall filter: seccomp, {len(self.seccomp.denied)} calls denied{extra}")
        else:
            lines.append("syscall filter: OFF (fence.seccomp is false)")
        if self.root_mode:
            lines.append(
                f"file space: tmpfs {lim.tmp_mb} MB and {self.settings.max_files} files "
                f"(home, /tmp, /dev/shm); ptys: {self.ptys or 'none'}"
            )
        else:
            lines.append(
                f"file space: tmpfs {lim.tmp_mb} MB, files not capped (run the bot as root for "
                "an inode cap); ptys: none"
            )
        lines.append(
            "background processes: allowed"
            if self.settings.allow_background
            else "background processes: stopped after each run"
        )
        if self.gpu_note:
            lines.append(self.gpu_note)
        return tuple(lines)


async def prepare(
    settings: FenceSettings,
    limits: KernelLimits,
    *,
    root_mode: bool,
    delegation: Delegation | NoDelegation | None = None,
) -> Fence:
    """Decide and set up the fences; raises SeccompUnavailable if the filter cannot be built."""
    fence = Fence(settings=settings, limits=limits, root_mode=root_mode)
    if settings.cgroup == "off":
        fence.cgroup_reason = "cgroups are turned off (fence.cgroup = off)"
    else:
        found = delegation if delegation is not None else find_delegation()
        if isinstance(found, NoDelegation):
            fence.cgroup_reason = found.reason
        else:
            plan = pool_plan(limits)
            sessions = plan.sessions + plan.most + 1
            total = CgroupLimits(
                memory_bytes=(settings.total_memory_mb or limits.memory_mb * sessions) << 20,
                pids=limits.max_processes * sessions,
                cpus=settings.total_cpus,
            )
            cgroups = KernelCgroups(found, total)
            try:
                await asyncio.to_thread(cgroups.setup)
            except OSError as exc:
                fence.cgroup_reason = f"the delegated cgroup {found.root} refused set-up ({exc})"
            else:
                fence.cgroups = cgroups
    if settings.seccomp:
        fence.seccomp = await asyncio.to_thread(
            compile_policy, memory_cgroup=fence.cgroups is not None
        )
    for line in fence.describe():
        log.info("kernel sandbox %s", line)
    if fence.cgroups is None:
        log.info("no cgroup v2 fence: %s", fence.cgroup_reason)
    return fence


__all__ = ["Fence", "SeccompUnavailable", "prepare"]


# -- file descriptors bwrap reads ------------------------------------------------------------


class Handoff:
    """File descriptors handed to one bwrap; close it once the process is spawned."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def data(self, content: bytes, name: str = "nbhelp") -> int:
        fd = os.memfd_create(name, 0)  # the bot's own, not the sandbox's: no seccomp here
        os.write(fd, content)
        os.lseek(fd, 0, os.SEEK_SET)
        self.fds.append(fd)
        return fd

    def file(self, path: Path) -> int:
        fd = os.open(path, os.O_RDONLY)
        self.fds.append(fd)
        return fd

    def take(self) -> tuple[int, ...]:
        """Hand the descriptors over (to :func:`bot.kernels.process.spawn`, which closes them
        once the child has them); this handoff no longer owns them."""
        fds, self.fds = tuple(self.fds), []
        return fds

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def __enter__(self) -> Handoff:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def pack(argv: Sequence[str], handoff: Handoff, *, hide: Iterable[Path] = ()) -> list[str]:
    """``bwrap --args FD -- COMMAND``: every option through a file descriptor.

    Read-only binds of regular files under ``hide`` (the run directory) become
    ``--ro-bind-data FD DEST``: their content is copied and the mount table shows a
    ``/bindfile…`` name instead of the host path.
    """
    hidden = [Path(p) for p in hide]
    out: list[str] = []
    args = list(argv[1:])
    i = 0
    command: list[str] = []
    while i < len(args):
        arg = args[i]
        if arg == "--":  # bwrap takes options only from --args: the command stays outside
            command = args[i:]
            break
        if arg == "--ro-bind" and i + 2 < len(args):
            source = Path(args[i + 1])
            if source.is_file() and any(_is_under(source, h) for h in hidden):
                out += ["--ro-bind-data", str(handoff.file(source)), args[i + 2]]
                i += 3
                continue
        out.append(arg)
        i += 1
    blob = b"".join(a.encode() + b"\0" for a in out)
    return [argv[0], "--args", str(handoff.data(blob, "bwrap-args")), *command]


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# -- the launcher ----------------------------------------------------------------------------


def launcher_argv(
    python: str,
    argv: Sequence[str],
    *,
    cgroup: Path | None = None,
    stage: Sequence[dict[str, object]] = (),
) -> list[str]:
    """``python -I -S -c LAUNCHER CONFIG``: join ``cgroup``, stage mounts, exec ``argv``."""
    import json

    config = {"cgroup": str(cgroup) if cgroup else None, "stage": list(stage), "argv": list(argv)}
    return [python, "-I", "-S", "-c", LAUNCHER, json.dumps(config)]


def setpriv_argv(uid: int, gid: int) -> list[str]:
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


# -- neutral paths ---------------------------------------------------------------------------

NEUTRAL_VENV = "/opt/venv"
NEUTRAL_PYTHON = "/opt/python"


def neutral_roots(roots: Sequence[Path]) -> list[tuple[Path, str]]:
    """(host root, inside path): the venv at /opt/venv, the base install at /opt/python."""
    mapping: list[tuple[Path, str]] = []
    extra = 0
    for root in roots:
        if (root / "pyvenv.cfg").is_file() and not any(d == NEUTRAL_VENV for _, d in mapping):
            mapping.append((root, NEUTRAL_VENV))
        elif not any(d == NEUTRAL_PYTHON for _, d in mapping):
            mapping.append((root, NEUTRAL_PYTHON))
        else:
            extra += 1
            mapping.append((root, f"/opt/python-{extra}"))
    return mapping


def translate(text: str, mapping: Sequence[tuple[Path, str]]) -> str:
    """Host root paths in ``text`` replaced by their inside paths (longest first)."""
    for host, inside in sorted(mapping, key=lambda m: -len(str(m[0]))):
        text = text.replace(str(host), inside)
    return text


def inside_path(path: str | Path, mapping: Sequence[tuple[Path, str]]) -> str:
    p = Path(os.path.abspath(path))
    for host, inside in sorted(mapping, key=lambda m: -len(str(m[0]))):
        if _is_under(p, host):
            rel = p.relative_to(host)
            return inside if str(rel) == "." else f"{inside}/{rel}"
    return str(p)


_HOST_PATH = re.compile(r"(?<![\w.])/(?:root|home|work|srv|opt|tmp|var)/[^\s'\"]*")


def build_patch(root: Path, mapping: Sequence[tuple[Path, str]], patch: Path) -> int:
    """Write the overlay layer above ``root`` that makes it work at its neutral path and hides
    host paths from the files a curious user would read first. Returns the files written.

    - ``pyvenv.cfg``: ``home``/``executable`` re-pointed, ``command`` dropped;
    - ``bin/``: absolute symlinks re-pointed, script shebangs rewritten;
    - ``site-packages``: editable-install hooks, and ``.pth`` files that name host paths
      outside the sandbox, are emptied; so is ``direct_url.json`` of editable installs;
    - ``_sysconfigdata*.py``: build prefixes re-pointed.

    Compiled ``.pyc`` files still record the path they were compiled at (see docs/sandbox.md).
    """
    patch.mkdir(parents=True, exist_ok=True)
    patch.chmod(0o755)
    written = 0

    def put(
        rel: Path, content: str | None = None, link: str | None = None, mode: int = 0o644
    ) -> None:
        nonlocal written
        target = patch / rel
        for parent in reversed(target.relative_to(patch).parents):
            d = patch / parent
            d.mkdir(exist_ok=True)
            d.chmod(0o755)
        if target.is_symlink() or target.exists():
            target.unlink()
        if link is not None:
            target.symlink_to(link)
        else:
            target.write_text(content or "")
            target.chmod(mode)
        written += 1

    cfg = root / "pyvenv.cfg"
    if cfg.is_file():
        lines = []
        for line in cfg.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key == "command":
                continue
            lines.append(translate(line, mapping))
        put(Path("pyvenv.cfg"), "\n".join(lines) + "\n")
    bin_dir = root / "bin"
    if bin_dir.is_dir():
        for entry in sorted(bin_dir.iterdir()):
            rel = entry.relative_to(root)
            if entry.is_symlink():
                target = os.readlink(entry)
                if os.path.isabs(target):
                    put(rel, link=inside_path(target, mapping))
            elif entry.is_file():
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    head = entry.read_bytes()[:4096]
                    if head.startswith(b"#!") and entry.stat().st_size < 1 << 20:
                        text = entry.read_text()
                        new = translate(text, mapping)
                        if new != text:
                            put(rel, new, mode=0o755)
    inside_roots = tuple(str(h) for h, _ in mapping)
    for site in root.glob("lib/python3*/site-packages"):
        for entry in site.iterdir():
            name = entry.name
            if not entry.is_file():
                continue
            if name.startswith("__editable__"):
                # an editable install points at a source tree the sandbox never sees
                put(entry.relative_to(root), "")
            elif name.endswith(".pth"):
                text = entry.read_text(errors="replace")
                paths = _HOST_PATH.findall(text)
                if any(not p.startswith(inside_roots) for p in paths):
                    put(entry.relative_to(root), "")
                elif paths:
                    put(entry.relative_to(root), translate(text, mapping))
        for direct in site.glob("*.dist-info/direct_url.json"):
            if '"editable": true' in direct.read_text(errors="replace"):
                put(direct.relative_to(root), "{}\n")
    for sysconfig in root.glob("lib/python3*/_sysconfigdata*.py"):
        text = sysconfig.read_text(errors="replace")
        new = translate(text, mapping)
        if new != text:
            put(sysconfig.relative_to(root), new)
    return written


# -- processes of one sandbox ----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def sandbox_pids(root_pid: int) -> list[int]:
    """Host pids of every process in the sandbox whose PID 1 is ``root_pid`` (itself first).

    Every process of a PID namespace descends from its init (orphans are re-parented to it),
    so walking the children of every thread finds them all.
    """
    seen: list[int] = []
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.append(pid)
        pending += _children(pid)
    return seen if _alive(root_pid) else []


def inner_pid(pid: int) -> int | None:
    """The pid a host process has inside its own (innermost) PID namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stray_pids(root_pid: int, cgroup_procs: Sequence[int] | None = None) -> list[int]:
    """Processes in the sandbox other than its PID 1 and the kernel (PID 2 inside)."""
    pids = list(cgroup_procs) if cgroup_procs is not None else sandbox_pids(root_pid)
    return [
        p
        for p in pids
        if p != root_pid and inner_pid(p) not in (1, KERNEL_PID_INSIDE, None) and _alive(p)
    ]


def _pid_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def kill_pids_in_ns(pids: Iterable[int], ns: int) -> set[int]:
    """SIGKILL each pid that is (still) in PID namespace ``ns``; race-free through pidfds:
    a pid reused by another process after the listing is never signalled."""
    killed: set[int] = set()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if _pid_ns(pid) == ns:  # checked after the pidfd pins the process
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed.add(pid)
        except OSError:
            pass
        finally:
            os.close(fd)
    return killed


@dataclass(frozen=True, slots=True)
class StrayReport:
    killed: int
    remaining: int


async def kill_strays(
    root_pid: int | None, *, cgroup: Path | None = None, rounds: int = 50
) -> StrayReport:
    """Stop every process a run left in the sandbox, except PID 1 and the kernel.

    Repeats until none is left (a stray may fork while it is being killed); ``remaining`` > 0
    means the caller should recycle the whole sandbox.
    """
    if root_pid is None:
        return StrayReport(0, 0)
    ns = _pid_ns(root_pid)
    if ns is None:
        return StrayReport(0, 0)
    killed: set[int] = set()
    for _ in range(rounds):
        procs = _cgroup_procs(cgroup) if cgroup is not None else None
        strays = await asyncio.to_thread(stray_pids, root_pid, procs)
        if not strays:
            return StrayReport(len(killed), 0)
        killed |= kill_pids_in_ns(strays, ns)
        await asyncio.sleep(0.005)  # let the killed exit and their children re-parent
    strays = stray_pids(root_pid, _cgroup_procs(cgroup) if cgroup is not None else None)
    return StrayReport(len(killed), len(strays))


def _cgroup_procs(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def strays_notice(count: int) -> str:
    s = "es" if count != 1 else ""
    return (
        f"{count} background process{s} your code started {'were' if count != 1 else 'was'} "
        "stopped: processes may not outlive their run here."
    )


# -- memory of one sandbox -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SandboxMemory:
    """What one sandbox holds, in bytes, as the host sees it (without a cgroup)."""

    anon: int  # anonymous memory of its processes (proportional: forked copies count once)
    shmem: int  # shared memory they map (memfd, SysV, /dev/shm, shared anonymous), proportional
    files: int  # bytes in its file space tmpfs
    inodes: int  # files in its file space
    processes: int
    details: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        # ~1 kB of kernel memory per tmpfs inode (inode + dentry), the figure issue 10 measured
        return self.anon + self.shmem + self.files + self.inodes * 1024


def _rollup(pid: int, keys: Sequence[str]) -> dict[str, int]:
    """Fields of /proc/PID/smaps_rollup in bytes. PSS shares a page among the processes that
    map it, so copy-on-write pages of forked children are not counted once per child."""
    out = dict.fromkeys(keys, 0)
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, value = line.partition(":")
            if key in out:
                out[key] = int(value.split()[0]) * 1024
    return out


def sandbox_memory(root_pid: int, file_space: str | None = None) -> SandboxMemory:
    """Proportional anonymous + shared memory of the sandbox's processes, and its file space.

    ``file_space`` is the path of the file space as seen from inside (``/home/user``), read
    through ``/proc/<pid>/root`` so it is the sandbox's own tmpfs.
    """
    anon = shmem = 0
    pids = sandbox_pids(root_pid)
    for pid in pids:
        values = _rollup(pid, ("Pss_Anon", "Pss_Shmem"))
        anon += values["Pss_Anon"]
        shmem += values["Pss_Shmem"]
    files = inodes = 0
    if file_space is not None and pids:
        with contextlib.suppress(OSError):
            st = os.statvfs(f"/proc/{root_pid}/root{file_space}")
            files = (st.f_blocks - st.f_bfree) * st.f_frsize
            inodes = st.f_files - st.f_ffree
    return SandboxMemory(anon=anon, shmem=shmem, files=files, inodes=inodes, processes=len(pids))


async def watch_memory(
    root_pid: int, limit_bytes: int, *, file_space: str | None = None, interval_s: float = 0.05
) -> SandboxMemory:
    """Return once the sandbox holds more than ``limit_bytes`` (the caller kills it).

    The fallback's sum over processes: RLIMIT_AS bounds each process, this bounds their sum
    while a run is active (children, shared memory). A cgroup makes it unnecessary.
    """
    while True:
        memory = await asyncio.to_thread(sandbox_memory, root_pid, file_space)
        if memory.total > limit_bytes or not memory.processes:
            return memory
        await asyncio.sleep(interval_s)
