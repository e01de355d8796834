"""A real Jupyter Kernel Gateway 3.0.1 on loopback, with the bubblewrap kernelspec.

It lives in its own virtualenv (``.venv-kg``, made by ``./dev test`` and ``.ci/run``; override
with ``NBHELP_KG_BIN``). Started once per test session on a free port with a random token;
stopping it kills its process group, then any kernel wrapper of this gateway still running.
Without the virtualenv the contract tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from bot.kernels.kernelspec import install

REPO = Path(__file__).resolve().parents[2]
KG_BIN = Path(os.environ.get("NBHELP_KG_BIN", REPO / ".venv-kg" / "bin" / "jupyter-kernelgateway"))
KERNELSPEC = "nbhelp-python"
READY_LINE = "is available at"


@dataclass
class RealGateway:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    state_dir: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(
    root: Path, *, extra_env: dict[str, str], options: list[str], timeout_s: float = 90.0
) -> RealGateway:
    """Install the kernelspec under ``root`` and start the gateway; wait for its ready line."""
    # Kernels run as unprivileged uids when the tests run as root: their state directory
    # must be reachable by them (pytest's own temporary directories are 0700).
    state = Path(tempfile.mkdtemp(prefix="nbhelp-kg-state-"))
    state.chmod(0o711)
    install(root / "kernels", KERNELSPEC, [f"--state-dir={state}", *options], python=_python())
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "JUPYTER_PATH": str(root),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_DATA_DIR": str(root / "data"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "KG_AUTH_TOKEN": token,  # in the environment, not on the command line
        **extra_env,
    }
    log = root / "gateway.log"
    proc = subprocess.Popen(
        [
            str(KG_BIN),
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.port={port}",
            f"--KernelGatewayApp.default_kernel_name={KERNELSPEC}",
            "--KernelGatewayApp.port_retries=0",
        ],
        env=env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gateway = RealGateway(f"http://127.0.0.1:{port}", token, root, proc, log, state)
    ready = threading.Event()
    threading.Thread(target=_drain, args=(proc, log, ready), daemon=True).start()
    if not ready.wait(timeout_s) or proc.poll() is not None:
        stop_gateway(gateway)
        raise RuntimeError(f"Kernel Gateway did not start: {log.read_text()[-2000:]}")
    return gateway


def _python() -> str:
    import sys

    return sys.executable


def _drain(proc: subprocess.Popen[bytes], log: Path, ready: threading.Event) -> None:
    """Copy the gateway's output to its log file; set ``ready`` at its ready line (or exit)."""
    assert proc.stdout is not None
    with log.open("wb") as out:
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if READY_LINE.encode() in line:
                ready.set()
    ready.set()  # the process ended: the caller checks poll()


def stop_gateway(gateway: RealGateway) -> None:
    """SIGTERM the gateway's process group (it shuts its kernels down), SIGKILL what is left,
    then kill any kernel wrapper of this gateway still running (matched by its state dir)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(gateway.proc.pid, signal.SIGTERM)
    try:
        gateway.proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gateway.proc.pid, signal.SIGKILL)
        gateway.proc.wait(10)
    for pid in wrapper_pids(gateway):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(gateway.state_dir, ignore_errors=True)


def wrapper_pids(gateway: RealGateway) -> list[int]:
    """Kernel wrappers (``bot.kernels.kernelspec run``) of this gateway still alive."""
    marker = f"--state-dir={gateway.state_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if marker in cmdline and b"bot.kernels.kernelspec" in cmdline:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    pids.append(int(entry.name))
    return pids
