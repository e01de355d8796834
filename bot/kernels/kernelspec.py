"""The bubblewrap kernelspec: a gateway's kernels in the same sandbox as the local pool.

A Jupyter Kernel Gateway (or Enterprise Gateway's local launcher) on a host we manage starts
kernels through this kernelspec instead of a bare ``ipykernel_launcher``::

    python -m bot.kernels.kernelspec install --dir /usr/local/share/jupyter/kernels \\
        --name nbhelp-python --memory-mb 2048 --protect /etc/nbhelp
    # kernel.json: argv = [python, -m, bot.kernels.kernelspec, run, …, {connection_file}],
    #              interrupt_mode = message

``run`` reads the gateway's connection file (TCP on loopback), starts the kernel with
:meth:`bot.kernels.local.LocalBackend.launch`, i.e. the very bwrap command line, scrubbed
environment, per-kernel uid (when run as root), rlimits and self-test of the local pool, and
relays the gateway's five ZMQ channels (TCP) to the kernel's ``ipc`` sockets inside the
sandbox. The kernel itself has no network at all: only this relay, outside the sandbox, listens
on the gateway's ports. The relay connects once and never reconnects (a kernel must not be able
to swap its socket for a symlink to some host socket), caps message size like the bot does,
and ends the kernel when a connection drops, so the gateway sees it die and reports it.

It exits when the kernel exits, on SIGTERM, or when its parent (the gateway) dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import random
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
PR_SET_PDEATHSIG = 1


def kernelspec(argv_options: Sequence[str], *, display_name: str, python: str) -> dict[str, Any]:
    """The kernel.json of this kernelspec (``{connection_file}`` filled in by the gateway)."""
    return {
        "argv": [python, "-m", "bot.kernels.kernelspec", "run", *argv_options, "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "message",  # a signal would reach bwrap's PID 1 and kill the sandbox
        "env": {"PYTHONPATH": str(PROJECT_ROOT)},
        "metadata": {"nbhelp": {"sandbox": "bubblewrap"}},
    }


def install(directory: Path, name: str, argv_options: Sequence[str], **kw: str) -> Path:
    target = directory / name
    target.mkdir(parents=True, exist_ok=True)
    spec = kernelspec(argv_options, display_name=kw.get("display_name", name), python=kw["python"])
    path = target / "kernel.json"
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


# -- run ---------------------------------------------------------------------------------------


def _limits(args: argparse.Namespace) -> Any:
    from bot.kernels.models import KernelLimits

    return KernelLimits(
        memory_mb=args.memory_mb,
        max_processes=args.max_processes,
        tmp_mb=args.tmp_mb,
        output_bytes=args.output_bytes,
        max_images=args.max_images,
        max_image_bytes=args.max_image_bytes,
        cpu_lifetime_s=args.cpu_lifetime_s,
        start_timeout_s=args.start_timeout_s,
        preimports="eager",  # a gateway's kernels are never completed as spares by this bot
    )


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _backend_class() -> Any:
    from bot.kernels.local import LocalBackend

    class SpecBackend(LocalBackend):
        """The local backend with uids locked across processes (one process per kernel)."""

        lock_dir: Path

        def _next_uid(self) -> int | None:
            if not self.root_mode:
                return None
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            start = random.randrange(self.uid_count)
            for i in range(self.uid_count):
                uid = self.uid_base + (start + i) % self.uid_count
                fd = os.open(self.lock_dir / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._uids_in_use.add(uid)  # the lock is held until this process exits
                return uid
            from bot.kernels.errors import KernelStartError

            raise KernelStartError(detail="no free sandbox uid")

    return SpecBackend


class Relay:
    """The gateway's TCP channels ⇄ the sandboxed kernel's ipc sockets (zmq proxies)."""

    def __init__(self, gateway: dict[str, Any], kernel_urls: dict[str, str], max_msg: int):
        import zmq

        self.zmq = zmq
        self.ctx = zmq.Context()
        self.dropped = threading.Event()
        self._threads: list[threading.Thread] = []
        ip = gateway.get("ip") or "127.0.0.1"
        self._pairs = []
        for channel in CHANNELS:
            front_type, back_type = (
                (zmq.XPUB, zmq.XSUB) if channel == "iopub" else (zmq.ROUTER, zmq.DEALER)
            )
            front = self.ctx.socket(front_type)
            back = self.ctx.socket(back_type)
            for sock in (front, back):
                sock.setsockopt(zmq.LINGER, 0)
            back.setsockopt(zmq.RECONNECT_IVL, -1)  # never reconnect (see the module doc)
            back.setsockopt(zmq.MAXMSGSIZE, max_msg)
            front.bind(f"tcp://{ip}:{int(gateway[f'{channel}_port'])}")
            monitor = back.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            back.connect(kernel_urls[channel])
            self._pairs.append((front, back, monitor))

    def start(self) -> None:
        for front, back, monitor in self._pairs:
            for target, args in ((self._proxy, (front, back)), (self._watch, (monitor,))):
                thread = threading.Thread(target=target, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _proxy(self, front: Any, back: Any) -> None:
        with contextlib.suppress(self.zmq.ZMQError):
            self.zmq.proxy(front, back)

    def _watch(self, monitor: Any) -> None:
        from zmq.utils.monitor import recv_monitor_message

        with contextlib.suppress(self.zmq.ZMQError):
            recv_monitor_message(monitor)
            self.dropped.set()

    def close(self) -> None:
        """Nothing to do: the proxies block in their threads, and closing their sockets from
        here is not thread-safe (libzmq asserts). The process ends with ``os._exit``."""


async def _run(args: argparse.Namespace, gateway: dict[str, Any], runtime_dir: Path) -> int:
    if gateway.get("transport", "tcp") != "tcp":
        print("nbhelp kernelspec: the gateway must use tcp transport", file=sys.stderr)
        return 2
    from bot.kernels import sandbox as sb
    from bot.kernels.process import wait_for_sockets

    protected = [Path(p) for p in args.protect]
    protected.append(runtime_dir)  # the gateway's connection files: other kernels' keys
    backend = _backend_class()(
        _limits(args),
        run_dir=Path(args.state_dir),
        protected_paths=protected,
        python=args.python,
        preimport=not args.no_preimport,
        uid_base=args.uid_base,
    )
    backend.lock_dir = Path(args.state_dir) / "uids"
    relay: Relay | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # interrupts arrive as messages
    try:
        await backend.check()
        kernel, info = await backend.launch(
            gateway["key"], signature_scheme=gateway.get("signature_scheme", "hmac-sha256")
        )
        # launch() waits for shell, iopub and control; the relay needs stdin and hb too, and
        # connects once only.
        async with asyncio.timeout(args.start_timeout_s):
            await wait_for_sockets(f"{sb.KERNEL_DIR}/ipc", kernel, CHANNELS)
        urls = {channel: info.url(channel) for channel in CHANNELS}
        relay = Relay(gateway, urls, backend.max_msg_bytes())
        relay.start()
        dropped = loop.run_in_executor(None, relay.dropped.wait)
        waits = {
            asyncio.ensure_future(kernel.exited.wait()),
            asyncio.ensure_future(stop.wait()),
            dropped,
        }
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for fut in pending:
            fut.cancel()
        code = kernel.proc.returncode
        if relay.dropped.is_set() and code is None:
            # After a shutdown_request the kernel closes its sockets and may take seconds to
            # exit; after an oversized message the connection is gone for good. Either way the
            # sandbox goes now (the gateway restarts a kernel it did not ask to stop).
            print(
                "nbhelp kernelspec: kernel connection closed; stopping the sandbox", file=sys.stderr
            )
        await backend.shutdown(kernel)
        return code if code is not None and code >= 0 else 1
    except Exception as exc:
        print(f"nbhelp kernelspec: cannot start the kernel: {exc}", file=sys.stderr)
        return 1
    finally:
        if relay is not None:
            relay.dropped.set()  # releases the executor thread waiting on it
            relay.close()
        await backend.aclose()


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    from bot.kernels.models import KernelLimits

    d = KernelLimits()
    parser.add_argument("--memory-mb", type=int, default=d.memory_mb)
    parser.add_argument("--max-processes", type=int, default=d.max_processes)
    parser.add_argument("--tmp-mb", type=int, default=d.tmp_mb)
    parser.add_argument("--output-bytes", type=int, default=d.output_bytes)
    parser.add_argument("--max-images", type=int, default=d.max_images)
    parser.add_argument("--max-image-bytes", type=int, default=d.max_image_bytes)
    parser.add_argument("--cpu-lifetime-s", type=int, default=d.cpu_lifetime_s)
    parser.add_argument("--start-timeout-s", type=float, default=d.start_timeout_s)
    parser.add_argument("--no-preimport", action="store_true", help="skip numpy/pandas/mpl")
    parser.add_argument("--python", default=sys.executable, help="the kernel's interpreter")
    parser.add_argument("--state-dir", default="/tmp/nbhelp-kernelspec")
    parser.add_argument("--uid-base", type=int, default=910_000, help="root only: kernel uids")
    parser.add_argument(
        "--protect", action="append", default=[], help="a path never visible in the sandbox"
    )


def _options(args: argparse.Namespace) -> list[str]:
    """The ``run`` options that ``install`` writes into kernel.json."""
    out = [
        f"--memory-mb={args.memory_mb}",
        f"--max-processes={args.max_processes}",
        f"--tmp-mb={args.tmp_mb}",
        f"--output-bytes={args.output_bytes}",
        f"--max-images={args.max_images}",
        f"--max-image-bytes={args.max_image_bytes}",
        f"--cpu-lifetime-s={args.cpu_lifetime_s}",
        f"--start-timeout-s={args.start_timeout_s:g}",
        f"--python={args.python}",
        f"--state-dir={args.state_dir}",
        f"--uid-base={args.uid_base}",
    ]
    out += [f"--protect={p}" for p in args.protect]
    if args.no_preimport:
        out.append("--no-preimport")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.kernels.kernelspec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start one sandboxed kernel (the kernelspec's argv)")
    _add_limit_options(run)
    run.add_argument("connection_file")
    inst = sub.add_parser("install", help="write kernel.json for a gateway")
    _add_limit_options(inst)
    inst.add_argument("--dir", required=True, help="a kernels directory on JUPYTER_PATH")
    inst.add_argument("--name", default="nbhelp-python")
    inst.add_argument("--display-name", default="Python (nbhelp sandbox)")
    args = parser.parse_args(argv)
    if args.command == "install":
        path = install(
            Path(args.dir),
            args.name,
            _options(args),
            display_name=args.display_name,
            python=args.python,
        )
        print(path)
        return 0
    _die_with_parent()
    connection_file = Path(args.connection_file).resolve()
    gateway = json.loads(connection_file.read_text())
    return asyncio.run(_run(args, gateway, connection_file.parent))


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # the relay's threads block in zmq; a normal exit would wait on them
