"""The local backend: ipykernel processes in bubblewrap sandboxes on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot.kernels import fence as fc
from bot.kernels import orphans
from bot.kernels import sandbox as sb
from bot.kernels.backend import KernelBackend, KernelHandle, KernelUsage
from bot.kernels.bootstrap import BOOTSTRAP, TOP_UP, bootstrap_config
from bot.kernels.errors import KernelStartError, SandboxUnavailable
from bot.kernels.fence_settings import FenceSettings
from bot.kernels.jupyter import (
    FLOOD,
    IPC_PORTS,
    ConnectionInfo,
    ExecOutcome,
    ExecReply,
    JupyterConnection,
    OutputSink,
)
from bot.kernels.models import KernelLimits
from bot.kernels.process import (
    LocalKernel,
    drain_stderr,
    read_child_pid,
    reap_left,
    spawn,
    wait_exited,
    wait_for_sockets,
)

log = logging.getLogger(__name__)


class LocalBackend(KernelBackend):
    """Kernels in bubblewrap sandboxes (``sandbox=True``) or, on explicit opt-in, plain processes.

    Each backend makes its own directory (in ``run_dir``, default the system temp dir) holding
    one 0700 directory per kernel (its connection file) plus the synthesized /etc files and the
    matplotlib font cache; :meth:`aclose` removes it. ``protected_paths`` are masked if they fall inside anything the
    sandbox binds, and the self-test fails if any of them is readable inside.
    """

    def __init__(
        self,
        limits: KernelLimits,
        *,
        sandbox: bool = True,
        bwrap: str | None = "bwrap",
        run_dir: Path | None = None,
        protected_paths: Sequence[Path] = (),
        python: str = sys.executable,
        preimport: bool = True,
        dev_dir: Path = Path("/dev"),
        extra_ro_binds: Sequence[Path] = (),
        uid_base: int = 900_000,
        uid_count: int = 4096,
        max_concurrent_starts: int | None = None,
        fence: FenceSettings | None = None,
    ) -> None:
        self.limits = limits
        self.fence_settings = fence or FenceSettings()
        self.fence: fc.Fence | None = None  # what this host allows; set by check()
        self._neutral: list[tuple[Path, str]] = []  # python roots -> /opt/python, /opt/venv
        self._script_ids = itertools.count(1)
        self._sandbox = sandbox
        self._bwrap_name = bwrap
        self._run_dir_arg = run_dir
        self.protected = tuple(Path(p) for p in protected_paths)
        self.python = python
        self.preimport = preimport
        self.dev_dir = dev_dir
        self.extra_ro_binds = tuple(Path(p).resolve() for p in extra_ro_binds)
        self.uid_base = uid_base
        self.uid_count = uid_count
        self.root_mode = sandbox and os.geteuid() == 0
        self._gpu = sb.detect_gpu(dev_dir) if sandbox else None
        self._start_sem = asyncio.Semaphore(max_concurrent_starts or max(1, os.cpu_count() or 1))
        self._ids = itertools.count(1)
        self._uid_cursor = itertools.count()
        self._uids_in_use: set[int] = set()
        self._run_dir: Path | None = None
        self._own_run_dir = False
        self._fontlist: Path | None = None
        self._kernels: set[LocalKernel] = set()
        self._guards: set[asyncio.Task[None]] = set()
        self._setup_lock = asyncio.Lock()
        self._checked = False
        self.name = "local-bwrap" if sandbox else "local-unsandboxed"

    # -- interface ---------------------------------------------------------------------------

    @property
    def sandboxed(self) -> bool:
        return self._sandbox

    @property
    def gpu(self) -> str | None:
        return self._gpu.name if self._gpu else None

    def unsandboxed(self) -> LocalBackend:
        return LocalBackend(
            self.limits,
            sandbox=False,
            run_dir=self._run_dir_arg,
            protected_paths=self.protected,
            python=self.python,
            preimport=self.preimport,
        )

    async def check(self) -> None:
        async with self._setup_lock:
            if self._checked:
                return
            self._setup_dirs()
            if self._sandbox:
                await self._prepare_fence()
                await self._self_test()
            self._checked = True

    async def start(self, owner: str | None = None) -> LocalKernel:
        await self.check()  # ``owner`` is not needed: every local kernel is anonymous
        async with self._start_sem:
            return await self._start()

    async def execute(self, kernel: KernelHandle, code: str, sink: OutputSink) -> ExecReply:
        assert isinstance(kernel, LocalKernel)
        if not kernel.process_alive or kernel.conn is None:
            return ExecReply(ExecOutcome.DIED)
        kernel.strays_stopped = 0
        watch = None
        fence = self.fence
        if fence is not None and fence.cgroups is None and kernel.root_pid is not None:
            # no cgroup: the sum over the sandbox's processes is watched while the run lasts
            limit = self.limits.memory_mb << 20
            watch = asyncio.create_task(fc.watch_memory(kernel.root_pid, limit, file_space=sb.HOME))
            watch.add_done_callback(lambda t: self._over_memory(kernel, t))
        try:
            reply = await kernel.conn.execute(code, sink)
        finally:
            if watch is not None:
                watch.cancel()
        if self._sandbox and not self.fence_settings.allow_background and kernel.process_alive:
            strays = await fc.kill_strays(kernel.root_pid, cgroup=kernel.cgroup)
            kernel.strays_stopped = strays.killed
            if strays.remaining:
                log.warning("kernel %s: %d strays survived; recycling", kernel.id, strays.remaining)
                await self._kill(kernel)
        if reply.outcome is ExecOutcome.BROKEN and kernel.flood is None:
            # A dropped connection often means the process is exiting (a segfault): tell the
            # two apart. On a loaded machine the exit can trail the closed socket by seconds.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kernel.exited.wait(), BROKEN_EXIT_WAIT_S)
        if _ended(kernel) and not kernel.killed:  # it died during the run (not by our hand)
            return ExecReply(ExecOutcome.DIED)
        return reply

    def _over_memory(self, kernel: LocalKernel, task: asyncio.Task[fc.SandboxMemory]) -> None:
        if task.cancelled() or task.exception() is not None or not kernel.process_alive:
            return
        memory = task.result()
        log.info("kernel %s over its memory limit (%d bytes held); killed", kernel.id, memory.total)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(kernel.proc.pid, signal.SIGKILL)

    async def top_up(self, kernel: KernelHandle) -> None:
        """Import what a lean kernel deferred (pandas, matplotlib with its inline backend) while
        it is a spare. A top-up that fails or hangs leaves the kernel dead, never half-done."""
        assert isinstance(kernel, LocalKernel)
        if not kernel.lean or not kernel.alive or kernel.conn is None:
            return
        try:
            async with asyncio.timeout(self.limits.start_timeout_s):
                reply = await kernel.conn.execute(TOP_UP, lambda output, size: None, count=False)
        except TimeoutError:
            reply = ExecReply(ExecOutcome.BROKEN)
        except asyncio.CancelledError:
            await asyncio.shield(self._kill(kernel))  # interrupted mid-import: state unknown
            raise
        if reply.outcome is ExecOutcome.FINISHED and reply.status == "ok":
            kernel.lean = False
            return
        log.warning("kernel %s: completing its imports failed (%s); recycled", kernel.id, reply)
        await self._kill(kernel)

    async def interrupt(self, kernel: KernelHandle) -> None:
        assert isinstance(kernel, LocalKernel)
        if kernel.alive and kernel.conn is not None:
            kernel.conn.interrupt()

    async def shutdown(self, kernel: KernelHandle) -> None:
        assert isinstance(kernel, LocalKernel)
        await self._kill(kernel)

    def usage(self, kernel: KernelHandle) -> KernelUsage | None:
        assert isinstance(kernel, LocalKernel)
        if not kernel.alive:
            return None
        if kernel.root_pid is not None:
            proc_dir = Path(f"/proc/{kernel.root_pid}/root/proc")
            try:
                pids = [p for p in os.listdir(proc_dir) if p.isdigit()]
            except OSError:
                return None
        else:
            proc_dir = Path("/proc")
            pids = [str(kernel.proc.pid)]
        tasks = 0
        rss = 0
        for pid in pids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (proc_dir / pid / "stat").read_text().rsplit(")", 1)[1].split()
                tasks += int(fields[17])  # num_threads
                rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return KernelUsage(tasks=tasks, processes=len(pids), rss_bytes=rss)

    def kill_now(self) -> int:
        """Kill every kernel at once, synchronously: the last resort of a shutdown that ran out
        of time. Returns how many sandboxes were signalled."""
        count = 0
        for kernel in list(self._kernels):
            kernel.killed = True
            for pid in (kernel.proc.pid, kernel.root_pid):
                if pid is None:
                    continue
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            count += 1
        if self._own_run_dir and self._run_dir is not None:
            _rmtree(self._run_dir)
        return count

    async def aclose(self) -> None:
        for kernel in list(self._kernels):
            await self._kill(kernel)
        await asyncio.gather(*self._guards, return_exceptions=True)  # each ends with its kernel
        await reap_left()  # sandboxes whose start outlived the caller that wanted them
        if self.fence is not None and self.fence.cgroups is not None:
            await self.fence.cgroups.aclose()
        if self._own_run_dir and self._run_dir is not None:
            await asyncio.to_thread(_rmtree, self._run_dir)
            self._run_dir = None
            self._checked = False

    # -- setup -------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            raise RuntimeError("backend not set up; call check() first")
        return self._run_dir

    def _setup_dirs(self) -> None:
        if self._run_dir is not None:
            return
        # One private directory per bot process, even inside a configured run_dir: several
        # processes (the bot, `python -m bot ask`) may share that one.
        base = Path(self._run_dir_arg or tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        orphans.sweep(base)  # what a killed predecessor left: its sandboxes, its directory
        self._run_dir = Path(tempfile.mkdtemp(prefix=orphans.PREFIX, dir=base))
        orphans.write_owner(self._run_dir)
        self._own_run_dir = True
        # Other uids (the sandboxes) may traverse it to their own 0700 directories, not list it.
        self._run_dir.chmod(0o711)
        if self.root_mode:
            blocked = [p for p in self._run_dir.parents if not os.stat(p).st_mode & 0o001]
            if blocked:
                raise SandboxUnavailable(
                    detail=f"kernels run as unprivileged uids and cannot reach {self._run_dir}: "
                    f"`chmod o+x {blocked[0]}` or choose another run_dir"
                )
        sb.write_etc(self.run_dir / "etc")
        (self.run_dir / "etc").chmod(0o755)
        (self.run_dir / "empty.json").write_text("{}")
        (self.run_dir / "empty.json").chmod(0o644)
        empty_file = self.run_dir / "empty"
        empty_file.write_bytes(b"")
        empty_file.chmod(0o444)
        (self.run_dir / "empty.d").mkdir(exist_ok=True)
        (self.run_dir / "empty.d").chmod(0o555)
        if self.root_mode:
            self._setup_stage()

    def _setup_stage(self) -> None:
        """Mount points and overlay layers of the launcher's private mount namespace."""
        stage = self.run_dir / "stage"
        self._neutral = fc.neutral_roots(sb.python_roots(self.python))
        names = ["empty", "files", "pts"]
        names += [f"root-{i}" for i in range(len(self._neutral))]
        names += [f"extra-{i}" for i in range(len(self.extra_ro_binds))]
        for name in names:
            (stage / name).mkdir(parents=True, exist_ok=True)
            (stage / name).chmod(0o755)
        for i, (root, _) in enumerate(self._neutral):
            fc.build_patch(root, self._neutral, stage / f"patch-{i}")

    def _stage_specs(self, uid: int) -> list[dict[str, object]]:
        stage = self.run_dir / "stage"
        specs: list[dict[str, object]] = []
        for i, (root, _) in enumerate(self._neutral):
            layers = [str(stage / f"patch-{i}"), str(root)]
            specs.append({"type": "overlay", "target": str(stage / f"root-{i}"), "layers": layers})
        for i, extra in enumerate(self.extra_ro_binds):
            layers = [str(stage / "empty"), str(extra)]
            specs.append({"type": "overlay", "target": str(stage / f"extra-{i}"), "layers": layers})
        specs.append(
            {
                "type": "tmpfs",
                "target": str(stage / "files"),
                "size": self.limits.tmp_mb << 20,
                "nr_inodes": self.fence_settings.max_files,
                "uid": uid,
                "dirs": ["home", "shm"],
            }
        )
        if self.fence is not None and self.fence.ptys:
            specs.append({"type": "devpts", "target": str(stage / "pts"), "max": self.fence.ptys})
        return specs

    async def _prepare_fence(self) -> None:
        try:
            fence = await fc.prepare(self.fence_settings, self.limits, root_mode=self.root_mode)
        except fc.SeccompUnavailable as exc:
            raise SandboxUnavailable(
                "/run is disabled: the sandbox's syscall filter cannot be built (see the bot's "
                "log for the fix).",
                detail=f"seccomp: {exc}",
            ) from exc
        if self._gpu is not None:
            if fence.memory_cgroup or self.fence_settings.gpu_without_cgroup:
                how = "cgroup memory.max" if fence.memory_cgroup else "RLIMIT_DATA only"
                fence.gpu_note = f"GPU ({self._gpu.name}): offered to kernels, memory fence {how}"
            else:
                fence.gpu_note = (
                    f"GPU ({self._gpu.name}): not offered — without a cgroup memory fence CUDA "
                    "cannot run under RLIMIT_AS (set fence.gpu_without_cgroup to accept weaker "
                    "limits)"
                )
                self._gpu = None
            log.info("kernel sandbox %s", fence.gpu_note)
        self.fence = fence

    def fences(self) -> tuple[str, ...]:
        return self.fence_description()

    def fence_description(self) -> tuple[str, ...]:
        """Which fences are active, one line each (for ``/run --info`` and the log)."""
        if not self._sandbox:
            return ("no sandbox: user code runs as the bot, without any fence",)
        if self.fence is None:
            return ("fence not set up yet",)
        return self.fence.describe()

    def _ro_sources(self) -> tuple[Path, ...]:
        return (*sb.python_roots(self.python), *self.extra_ro_binds)

    def _layout(
        self, connection_file: Path, info_fd: int | None, seccomp_fd: int | None = None
    ) -> sb.SandboxLayout:
        stage = self.run_dir / "stage"
        python = self.python
        file_space = devpts = None
        if self.root_mode:
            binds = tuple(
                (stage / f"root-{i}", inside) for i, (_, inside) in enumerate(self._neutral)
            )
            binds += tuple(
                (stage / f"extra-{i}", str(s)) for i, s in enumerate(self.extra_ro_binds)
            )
            python = fc.inside_path(self.python, self._neutral)
            file_space = stage / "files"
            devpts = stage / "pts" if self.fence is not None and self.fence.ptys else None
        else:
            binds = tuple((s, str(s)) for s in self._ro_sources())
        bwrap = sb.find_bwrap(self._bwrap_name) or "bwrap"
        return sb.SandboxLayout(
            bwrap=bwrap,
            python=python,
            ro_binds=binds,
            connection_file=connection_file,
            etc_dir=self.run_dir / "etc",
            empty_file=self.run_dir / "empty",
            empty_dir=self.run_dir / "empty.d",
            mpl_fontlist=self._fontlist,
            gpu=self._gpu,
            protected=self.protected,
            info_fd=info_fd,
            seccomp_fd=seccomp_fd,
            file_space=file_space,
            devpts=devpts,
            address_space_limit=self._gpu is None,  # a GPU is offered only under a fence
        )

    def _command(
        self,
        handoff: fc.Handoff,
        connection_file: Path,
        info_fd: int | None,
        uid: int | None,
        cgroup: Path | None,
        command: Sequence[str] | None = None,
    ) -> list[str]:
        """The sandbox's full command line; its fds are in ``handoff`` (pass them on)."""
        seccomp = self.fence.seccomp if self.fence is not None else None
        seccomp_fd = handoff.data(seccomp.bpf, "seccomp") if seccomp is not None else None
        layout = self._layout(connection_file, info_fd, seccomp_fd)
        if command is not None:
            command = [layout.python if c == self.python else c for c in command]
        argv = sb.bwrap_argv(layout, self.limits, preimport=self.preimport, command=command)
        argv = fc.pack(argv, handoff, hide=(self.run_dir,))
        if self.root_mode and uid is not None:
            argv = [*fc.setpriv_argv(uid, uid), *argv]
            stage = self._stage_specs(uid)
            return fc.launcher_argv(sys.executable, argv, cgroup=cgroup, stage=stage)
        if cgroup is not None:
            return fc.launcher_argv(sys.executable, argv, cgroup=cgroup)
        return argv

    def _new_cgroup(self, name: str) -> Path | None:
        if self.fence is None or self.fence.cgroups is None:
            return None
        return self.fence.cgroups.create(name, self.fence.sandbox_cgroup_limits())

    async def _remove_cgroup(self, cgroup: Path | None) -> None:
        if cgroup is not None and self.fence is not None and self.fence.cgroups is not None:
            await self.fence.cgroups.remove(cgroup)

    def _next_uid(self) -> int | None:
        if not self.root_mode:
            return None
        for _ in range(self.uid_count):
            uid = self.uid_base + next(self._uid_cursor) % self.uid_count
            if uid not in self._uids_in_use:
                self._uids_in_use.add(uid)
                return uid
        raise KernelStartError(detail="no free sandbox uid")

    async def _self_test(self) -> None:
        """Run one sandboxed Python: proves bwrap works, and builds matplotlib's font cache."""
        bwrap = sb.find_bwrap(self._bwrap_name)
        if bwrap is None:
            raise SandboxUnavailable(
                f"/run is disabled: the code sandbox (bubblewrap) is not installed; the admin can "
                f"{sb.INSTALL_HINT}.",
                detail=f"bubblewrap ({self._bwrap_name}) not found: {sb.INSTALL_HINT}",
            )
        if self.root_mode:
            missing = sb.missing_tools(("setpriv",))
            if missing:
                raise SandboxUnavailable(
                    detail=f"running as root needs util-linux tools {missing} to drop privileges; "
                    "install util-linux or run the bot as an unprivileged user"
                )
        code = _SELF_TEST.replace("PROTECTED", repr([str(p) for p in self.protected]))
        try:
            returncode, out, err = await self._run_script(code, limit_s=60)
        except TimeoutError:
            raise SandboxUnavailable(detail="the sandbox self-test timed out") from None
        stderr = err.decode(errors="replace")
        if returncode != 0:
            reason = sb.explain_failure(stderr)
            raise SandboxUnavailable(
                "/run is disabled: the code sandbox cannot start on this machine (see the bot's "
                "log for the fix).",
                detail=reason,
            )
        try:
            report = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SandboxUnavailable(detail=f"sandbox self-test said: {stderr[-500:]}") from None
        if report.get("visible"):
            raise SandboxUnavailable(
                detail=f"protected paths are readable inside the sandbox: {report['visible']}"
            )
        if report.get("fontlist"):
            path = self.run_dir / report["fontlist_name"]
            path.write_text(report["fontlist"])
            path.chmod(0o644)
            self._fontlist = path

    async def run_script(self, code: str, *, limit_s: float = 60) -> tuple[int, bytes, bytes]:
        """``python -c code`` once in a fresh sandbox, no kernel: (returncode, stdout, stderr).

        The benchmark's "fresh process per snippet" baseline; the self-test uses the same path.
        """
        await self.check()
        return await self._run_script(code, limit_s=limit_s)

    async def _run_script(self, code: str, *, limit_s: float) -> tuple[int, bytes, bytes]:
        uid = self._next_uid()
        cgroup = self._new_cgroup(f"script-{next(self._script_ids)}") if self._sandbox else None
        handoff = fc.Handoff()
        try:
            if self._sandbox:
                command = [self.python, "-c", code]
                empty = self.run_dir / "empty.json"
                argv = self._command(handoff, empty, None, uid, cgroup, command=command)
                env = sb.scrubbed_env()
            else:
                argv, env = [self.python, "-c", code], self._plain_env(self.run_dir)
            proc = await spawn(
                argv, stdout=asyncio.subprocess.PIPE, env=env, cwd="/", pass_fds=handoff.take()
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), limit_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
        finally:
            handoff.close()
            await self._remove_cgroup(cgroup)
            if uid is not None:
                self._uids_in_use.discard(uid)
        return proc.returncode or 0, out, err

    # -- kernels -----------------------------------------------------------------------------

    async def _start(self) -> LocalKernel:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.start_timeout_s
        kernel, host_info = await self.launch(secrets.token_hex(32), deadline=deadline)
        try:
            async with asyncio.timeout_at(deadline):
                kernel.conn = JupyterConnection(host_info, max_msg_bytes=self.max_msg_bytes())
                kernel.conn.connect()
                self._guard(kernel)
                await kernel.conn.wait_ready()
                # One silent cell warms IPython's first-execution paths, so a session's first
                # run costs what any later run does.
                await kernel.conn.execute(WARM_UP, lambda output, size: None, count=False)
            kernel.lean = self.preimport and self.limits.preimports == "lazy"
        except asyncio.CancelledError:
            await asyncio.shield(self._kill(kernel))
            raise
        except (TimeoutError, OSError, ConnectionError) as exc:
            tail = kernel.stderr_tail.decode(errors="replace").strip()[-800:]
            await self._kill(kernel)
            raise KernelStartError(
                detail=f"kernel {kernel.id} failed to start: {exc!r} {tail}"
            ) from exc
        log.debug("kernel %s started (uid %s)", kernel.id, kernel.uid)
        return kernel

    async def launch(
        self, key: str, *, signature_scheme: str = "hmac-sha256", deadline: float | None = None
    ) -> tuple[LocalKernel, ConnectionInfo]:
        """Start one kernel process (in its sandbox) and wait until its sockets listen.

        Returns the kernel and the connection info as seen from this host; nothing is connected
        yet. ``start`` connects to it; the gateway kernelspec (:mod:`bot.kernels.kernelspec`)
        proxies a gateway's connections to it, so both run the same sandbox command line.
        """
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.limits.start_timeout_s
        kernel_id = f"k{next(self._ids)}"
        directory = self.run_dir / kernel_id
        directory.mkdir(mode=0o700)
        uid = self._next_uid()
        connection_file = directory / "connection.json"
        kernel_ip = f"{sb.KERNEL_DIR}/ipc" if self._sandbox else str(directory / "ipc")
        info = ConnectionInfo("ipc", kernel_ip, key, dict(IPC_PORTS), signature_scheme)
        connection_file.write_text(json.dumps(info.as_kernel_json(kernel_ip)))
        connection_file.chmod(0o400)
        if uid is not None:
            os.chown(directory, uid, uid)
            os.chown(connection_file, uid, uid)
        read_fd = write_fd = -1
        handoff = fc.Handoff()
        cgroup = None
        try:
            if self._sandbox:
                cgroup = self._new_cgroup(kernel_id)
                read_fd, write_fd = os.pipe()
                argv = self._command(handoff, connection_file, write_fd, uid, cgroup)
            else:
                argv = self._plain_argv(directory, connection_file)
            fds = (write_fd, *handoff.take()) if write_fd >= 0 else handoff.take()
            write_fd = -1  # the spawn owns it now
            proc = await spawn(
                argv,
                stdout=asyncio.subprocess.DEVNULL,
                env=sb.scrubbed_env() if self._sandbox else self._plain_env(directory),
                cwd="/" if self._sandbox else str(directory),
                pass_fds=fds,
            )
        except BaseException:
            handoff.close()
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            await self._remove_cgroup(cgroup)
            raise
        kernel = LocalKernel(kernel_id, proc, directory, uid)
        kernel.cgroup = cgroup
        orphans.record(directory, [proc.pid])
        self._kernels.add(kernel)
        kernel._tasks.append(asyncio.create_task(self._watch(kernel)))
        kernel._tasks.append(
            asyncio.create_task(drain_stderr(kernel, limit=4 * self.max_msg_bytes()))
        )
        try:
            async with asyncio.timeout_at(deadline):
                if self._sandbox:
                    kernel.root_pid = await read_child_pid(read_fd, kernel)
                    orphans.record(directory, [proc.pid, kernel.root_pid])
                    ip = f"/proc/{kernel.root_pid}/root{kernel_ip}"
                else:
                    ip = kernel_ip
                host_info = ConnectionInfo("ipc", ip, key, dict(IPC_PORTS), signature_scheme)
                await wait_for_sockets(kernel_ip, kernel)
        except asyncio.CancelledError:
            await asyncio.shield(self._kill(kernel))
            raise
        except (TimeoutError, OSError, ConnectionError) as exc:
            tail = kernel.stderr_tail.decode(errors="replace").strip()[-800:]
            await self._kill(kernel)
            raise KernelStartError(
                detail=f"kernel {kernel_id} failed to start: {exc!r} {tail}"
            ) from exc
        finally:
            if read_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(read_fd)
        return kernel, host_info

    def _guard(self, kernel: LocalKernel) -> None:
        """Kill the kernel as soon as it floods (its connection's or stderr's traffic budget):
        a flooding kernel must not keep burning CPU until its session expires."""
        conn = kernel.conn
        assert conn is not None

        async def guard() -> None:
            waits = {
                asyncio.ensure_future(conn.broken.wait()),
                asyncio.ensure_future(kernel.flooded.wait()),
                asyncio.ensure_future(kernel.exited.wait()),  # ended otherwise: nothing to do
            }
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if conn.broken_reason.startswith(FLOOD):
                kernel.flood = conn.broken_reason
            if kernel.flood is not None and not kernel.killed:
                log.warning("kernel %s stopped: %s", kernel.id, kernel.flood)
                conn.fail_current(ExecOutcome.BROKEN)
                await asyncio.shield(self._kill(kernel))

        task = asyncio.create_task(guard())
        self._guards.add(task)
        task.add_done_callback(self._guards.discard)

    def max_msg_bytes(self) -> int:
        """The largest Jupyter message accepted from a kernel: one capped output, twice over."""
        image_b64 = self.limits.max_image_bytes * 4 // 3
        return max(self.limits.output_bytes, image_b64) * 2 + (64 << 10)

    def _plain_argv(self, directory: Path, connection_file: Path) -> list[str]:
        config = bootstrap_config(
            self.limits,
            connection_file=str(connection_file),
            cwd=str(directory / "home"),
            preimport=self.preimport,
        )
        return [self.python, "-c", BOOTSTRAP, config]

    def _plain_env(self, directory: Path) -> dict[str, str]:
        home = str(directory / "home")
        return sb.kernel_env(str(Path(self.python).parent), home=home)

    async def _watch(self, kernel: LocalKernel) -> None:
        await kernel.proc.wait()
        kernel.exited.set()
        if kernel.conn is not None:
            kernel.conn.fail_current(ExecOutcome.DIED)
        if not kernel.killed:
            log.info("kernel %s %s", kernel.id, kernel.exit_description)

    async def _kill(self, kernel: LocalKernel) -> None:
        kernel.killed = True
        if kernel.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(kernel.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                kernel.proc.kill()
            # bwrap's PID 1 dies with it (--die-with-parent) and takes the PID namespace along.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kernel.proc.wait(), 10)
        if kernel.root_pid is not None and not await wait_exited(kernel.root_pid):
            log.warning("sandbox of kernel %s still running after kill", kernel.id)
        if kernel.cgroup is not None:
            await self._remove_cgroup(kernel.cgroup)
            kernel.cgroup = None
        kernel.exited.set()
        if kernel.conn is not None:
            kernel.conn.close()
        for task in kernel._tasks:
            task.cancel()
        self._kernels.discard(kernel)
        if kernel.uid is not None:
            self._uids_in_use.discard(kernel.uid)
        await asyncio.to_thread(_rmtree, kernel.directory)


def _ended(kernel: LocalKernel) -> bool:
    return not kernel.process_alive


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


WARM_UP = "print(end='')"
BROKEN_EXIT_WAIT_S = 5.0

_SELF_TEST = r"""
import json, os, sys
report = {"uid": os.getuid(), "visible": []}
for path in PROTECTED:
    try:
        with open(path, "rb") as f:
            if f.read(1):
                report["visible"].append(path)
    except OSError:
        pass
    if os.path.isdir(path) and os.listdir(path):
        report["visible"].append(path)
import ipykernel
try:
    import matplotlib.font_manager as fm
    name = f"fontlist-v{fm.FontManager.__version__}.json"
    import matplotlib
    path = os.path.join(matplotlib.get_cachedir(), name)
    with open(path) as f:
        report["fontlist"] = f.read()
    report["fontlist_name"] = name
except Exception:
    pass
print(json.dumps(report))
"""
