"""One local kernel process and the plumbing around starting it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from bot.kernels.backend import KernelHandle
from bot.kernels.jupyter import FLOOD, IPC_PORTS, JupyterConnection

STDERR_TAIL = 4096


async def spawn(
    argv: list[str],
    *,
    stdout: int,
    env: dict[str, str],
    cwd: str,
    pass_fds: tuple[int, ...] = (),
) -> asyncio.subprocess.Process:
    """Start a process in its own session, stdin closed, stderr piped.

    Cancelling the caller never cancels the spawn itself: CPython's subprocess transport,
    cancelled mid-start, waits forever for a process nobody will stop (a hung shutdown, an
    orphaned sandbox). The spawn finishes on its own; a caller that left kills what it made.
    ``pass_fds`` are handed to the child and closed here once the child has them.
    """
    task = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    )
    if pass_fds:
        task.add_done_callback(lambda _t: _close_all(pass_fds))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        _left.add(task)
        task.add_done_callback(_kill_spawned)
        raise


# Spawns whose caller left, and the reaping of what they made: awaited by ``reap_left`` at
# shutdown, so no subprocess transport outlives the event loop (its finaliser would then
# print "Event loop is closed" on the way out).
_left: set[asyncio.Future[Any]] = set()


async def reap_left(timeout_s: float = 10.0) -> None:
    """Wait (bounded) until every process spawned for a caller that left is killed and reaped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while _left and (left := deadline - loop.time()) > 0:
        await asyncio.wait(set(_left), timeout=left)
        for fut in [f for f in _left if f.done()]:
            _left.discard(fut)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                await asyncio.wait_for(stream.read(), 5)


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _kill_spawned(task: asyncio.Task[asyncio.subprocess.Process]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    proc = task.result()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _left.add(asyncio.ensure_future(_reap(proc)))


class LocalKernel(KernelHandle):
    def __init__(
        self,
        kernel_id: str,
        proc: asyncio.subprocess.Process,
        directory: Path,
        uid: int | None,
    ) -> None:
        super().__init__(kernel_id)
        self.proc = proc
        self.directory = directory
        self.uid = uid
        self.root_pid: int | None = None  # host pid of the sandbox's PID 1
        self.conn: JupyterConnection | None = None
        self.exited = asyncio.Event()
        self.killed = False  # we killed it (as opposed to a crash)
        self.stderr_tail = b""
        self.stderr_bytes = 0
        self.flood: str | None = None  # why it was stopped for sending too much, if it was
        self.flooded = asyncio.Event()
        self.cgroup: Path | None = None  # its cgroup v2, where the host delegates one
        self.strays_stopped = 0  # processes the last run left behind and the fence stopped
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def process_alive(self) -> bool:
        return self.proc.returncode is None and not self.exited.is_set()

    @property
    def alive(self) -> bool:
        broken = self.conn is not None and self.conn.broken.is_set()
        return self.proc.returncode is None and not self.exited.is_set() and not broken

    @property
    def exit_description(self) -> str | None:
        if self.flood is not None:
            return self.flood
        if self.conn is not None and self.conn.broken_reason.startswith(FLOOD):
            return self.conn.broken_reason
        code = self.proc.returncode
        if code is None:
            if self.conn is not None and self.conn.broken.is_set():
                return f"connection lost: {self.conn.broken_reason}"
            return None
        if code < 0:
            return f"killed by {_signal_name(-code)}"
        if code > 128:  # bwrap's PID 1 reports a signalled child as 128 + signal
            return f"killed by {_signal_name(code - 128)}"
        return f"exited with status {code}"

    def host_pids(self) -> list[int]:
        """Host pids of the processes in the sandbox (for memory measurements)."""
        if self.root_pid is None:
            return [self.proc.pid]
        pids = []
        pending = [self.root_pid]
        while pending:
            pid = pending.pop()
            pids.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            pending += [int(c) for c in children]
        return pids


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


async def drain_stderr(kernel: LocalKernel, limit: int) -> None:
    """Keep the last few kB of the kernel's own stderr for diagnostics; never block it.

    Every byte counts: past ``limit`` (a flood through the sandbox's stderr pipe) the reading
    stops and the kernel is marked flooded, for the backend to kill."""
    stream = kernel.proc.stderr
    if stream is None:
        return
    with contextlib.suppress(asyncio.CancelledError, OSError):
        while chunk := await stream.read(65536):
            if kernel.flood is not None:
                continue  # being killed: read to the end of the pipe so it closes, keep nothing
            kernel.stderr_tail = (kernel.stderr_tail + chunk)[-STDERR_TAIL:]
            kernel.stderr_bytes += len(chunk)
            if kernel.stderr_bytes > limit:
                kernel.flood = (
                    f"{FLOOD}: its kernel wrote more than {limit / 1e6:.0f} MB to its error stream"
                )
                kernel.flooded.set()
            await asyncio.sleep(0)  # a pipe that is always full must not hold the loop


async def read_child_pid(fd: int, kernel: LocalKernel) -> int:
    """bwrap's --info-fd JSON names the host pid of the sandbox's PID 1."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", buffering=0)
    )
    try:
        data = b""
        while b"}" not in data:
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError(f"bwrap exited early ({kernel.exit_description})")
            data += chunk
        return int(json.loads(data[: data.index(b"}") + 1])["child-pid"])
    finally:
        transport.close()


async def wait_for_sockets(
    kernel_ip: str,
    kernel: LocalKernel,
    channels: tuple[str, ...] = ("shell", "iopub", "control"),
) -> None:
    """Connect only once the kernel listens on its sockets: we never reconnect later, so a
    first connect to a socket that is not listening yet would be lost. The kernel's network
    namespace lists its listening unix sockets in /proc/PID/net/unix."""
    wanted = {f"{kernel_ip}-{IPC_PORTS[name]}" for name in channels}
    table = Path(f"/proc/{kernel.root_pid or kernel.proc.pid}/net/unix")
    delay = 0.005
    while not wanted <= _listening_unix_sockets(table):
        if not kernel.alive:
            raise ConnectionError(f"kernel exited during start ({kernel.exit_description})")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _listening_unix_sockets(table: Path) -> set[str]:
    listening: set[str] = set()
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return listening
    for line in lines:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening
        if len(fields) >= 8 and int(fields[3], 16) & 0x10000:
            listening.add(fields[7])
    return listening


def pid_running(pid: int) -> bool:
    """Whether a host process exists and has not exited (zombies count as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def wait_exited(pid: int, limit_s: float = 5.0) -> bool:
    """Until ``pid`` has exited. For the sandbox's PID 1 this means every process in its PID
    namespace is gone too: the kernel kills and reaps them all before PID 1 may exit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    delay = 0.002
    while pid_running(pid):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True
