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

from bot.kernels import sandbox as sb
from bot.kernels.backend import KernelBackend, KernelHandle, KernelUsage
from bot.kernels.bootstrap import BOOTSTRAP, bootstrap_config
from bot.kernels.errors import KernelStartError, SandboxUnavailable
from bot.kernels.jupyter import (
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
    ) -> None:
        self.limits = limits
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
        reply = await kernel.conn.execute(code, sink)
        if reply.outcome is ExecOutcome.BROKEN:
            # A dropped connection often means the process is exiting: tell the two apart.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kernel.exited.wait(), 0.5)
        if not kernel.process_alive:
            return ExecReply(ExecOutcome.DIED)
        return reply

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

    async def aclose(self) -> None:
        for kernel in list(self._kernels):
            await self._kill(kernel)
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
        base = None
        if self._run_dir_arg is not None:
            base = Path(self._run_dir_arg)
            base.mkdir(parents=True, exist_ok=True)
        self._run_dir = Path(tempfile.mkdtemp(prefix="nbhelp-run-", dir=base))
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
        for i, _ in enumerate(self._ro_sources()):
            stage = self.run_dir / "stage" / str(i)
            stage.mkdir(parents=True, exist_ok=True)
            stage.chmod(0o755)

    def _ro_sources(self) -> tuple[Path, ...]:
        return (*sb.python_roots(self.python), *self.extra_ro_binds)

    def _layout(self, connection_file: Path, info_fd: int | None) -> sb.SandboxLayout:
        sources = self._ro_sources()
        if self.root_mode:
            binds = tuple((self.run_dir / "stage" / str(i), str(s)) for i, s in enumerate(sources))
        else:
            binds = tuple((s, str(s)) for s in sources)
        bwrap = sb.find_bwrap(self._bwrap_name) or "bwrap"
        return sb.SandboxLayout(
            bwrap=bwrap,
            python=self.python,
            ro_binds=binds,
            connection_file=connection_file,
            etc_dir=self.run_dir / "etc",
            empty_file=self.run_dir / "empty",
            empty_dir=self.run_dir / "empty.d",
            mpl_fontlist=self._fontlist,
            gpu=self._gpu,
            protected=self.protected,
            info_fd=info_fd,
        )

    def _wrap(self, argv: list[str], uid: int | None) -> list[str]:
        if not self.root_mode or uid is None:
            return argv
        stage = [(src, self.run_dir / "stage" / str(i)) for i, src in enumerate(self._ro_sources())]
        return [*sb.root_wrapper(stage, uid, uid), *argv]

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
            missing = sb.missing_tools(("unshare", "setpriv", "mount"))
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
        if self._sandbox:
            layout = self._layout(self.run_dir / "empty.json", None)
            argv = sb.bwrap_argv(layout, self.limits, command=[self.python, "-c", code])
            env = sb.scrubbed_env()
        else:
            argv, env = [self.python, "-c", code], self._plain_env(self.run_dir)
        uid = self._next_uid()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._wrap(argv, uid),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd="/",
                start_new_session=True,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), limit_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
        finally:
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
                await kernel.conn.wait_ready()
                # One silent cell warms IPython's first-execution paths, so a session's first
                # run costs what any later run does.
                await kernel.conn.execute(WARM_UP, lambda output, size: None, count=False)
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
        if self._sandbox:
            read_fd, write_fd = os.pipe()
            layout = self._layout(connection_file, write_fd)
            argv = self._wrap(sb.bwrap_argv(layout, self.limits, preimport=self.preimport), uid)
        else:
            argv = self._plain_argv(directory, connection_file)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=sb.scrubbed_env() if self._sandbox else self._plain_env(directory),
                cwd="/" if self._sandbox else str(directory),
                start_new_session=True,
                pass_fds=(write_fd,) if write_fd >= 0 else (),
            )
        finally:
            if write_fd >= 0:
                os.close(write_fd)
        kernel = LocalKernel(kernel_id, proc, directory, uid)
        self._kernels.add(kernel)
        kernel._tasks.append(asyncio.create_task(self._watch(kernel)))
        kernel._tasks.append(asyncio.create_task(drain_stderr(kernel)))
        try:
            async with asyncio.timeout_at(deadline):
                if self._sandbox:
                    kernel.root_pid = await read_child_pid(read_fd, kernel)
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
        kernel.exited.set()
        if kernel.conn is not None:
            kernel.conn.close()
        for task in kernel._tasks:
            task.cancel()
        self._kernels.discard(kernel)
        if kernel.uid is not None:
            self._uids_in_use.discard(kernel.uid)
        await asyncio.to_thread(_rmtree, kernel.directory)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


WARM_UP = "print(end='')"

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
