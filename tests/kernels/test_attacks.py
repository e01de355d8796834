"""Hostile code: each attack asserts what the user is told, that nothing leaked or got through,
and that another user's session kept answering while the attack ran."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.kernels import KernelService, RunResult, RunStatus
from bot.kernels.process import LocalKernel
from tests.kernels.helpers import (
    DB_SECRET,
    ENV_SECRET,
    OUTPUT_NOTICE,
    TEST_LIMITS,
    TIMEOUT_LIMITS,
    Protected,
    Runner,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

VENV = os.path.realpath(sys.prefix)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _exists(path: str) -> bool:
    return Path(path).exists()


async def attack(service: KernelService, code: str, name: str) -> tuple[RunResult, list[str]]:
    """Run ``code`` in a warm session while a bystander runs in another; return the attack's
    result and the order in which the two finished. The bystander's session must come through
    with its state: the order depends on the machine's speed and is not asserted."""
    attacker = Runner(service, f"attacker:{name}")
    bystander = Runner(service, "bystander")
    # Both sessions warm; the bystander's session holds state the attack must not cost it.
    await asyncio.gather(attacker.ok("pass"), bystander.ok("kept = 'bystander state'"))
    order: list[str] = []

    async def attacking() -> RunResult:
        result = await attacker(code)
        order.append("attack")
        return result

    async def standing_by() -> None:
        # Served while the attack runs (or right after it), in the same kernel: not reset.
        assert await bystander.ok("print(kept)") == "bystander state\n"
        order.append("bystander")

    result, _ = await asyncio.gather(attacking(), standing_by())
    return result, order


async def new_session_works(service: KernelService, name: str) -> None:
    fresh = Runner(service, f"fresh:{name}")
    code = (
        "import threading, os\n"
        "threads = [threading.Thread(target=os.getpid) for _ in range(20)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(sum(range(10)))"
    )
    assert await fresh.ok(code) == "45\n"


class Listener:
    """A TCP server on the host's loopback (and all interfaces) that counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(handle, "0.0.0.0", 0)
        return self.server.sockets[0].getsockname()[1]


@pytest_asyncio.fixture(loop_scope="module")
async def listener() -> AsyncIterator[tuple[Listener, int]]:
    lst = Listener()
    port = await lst.start()
    # the server works from the host: a sandboxed failure below is the sandbox, not the server
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    assert lst.connections == 1
    lst.connections = 0
    yield lst, port
    assert lst.server is not None
    lst.server.close()
    await lst.server.wait_closed()


# -- runaway code ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_infinite_loop(timeout_service: KernelService) -> None:
    run = Runner(timeout_service, "attacker:loop")
    await run.ok("kept = 'yes'")
    result, _ = await attack(timeout_service, "while True:\n    pass", "loop")
    assert result.status is RunStatus.TIMEOUT and not result.session_reset
    assert result.notices == (
        f"Stopped after {TIMEOUT_LIMITS.wall_s:g} s (time limit). Your variables are kept.",
    )
    assert await run.ok("print(kept)") == "yes\n"


@pytest.mark.slow
async def test_loop_inside_c_code_is_killed(timeout_service: KernelService) -> None:
    code = "import re\nre.match(r'(x+x+)+y', 'x' * 5000)"
    result, _ = await attack(timeout_service, code, "regex")
    assert result.status is RunStatus.TIMEOUT and result.session_reset
    assert "did not stop when interrupted" in result.notices[0]


# -- resource exhaustion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(8 * 1024**3)",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))",
        "a = np.ones((30_000, 30_000))",
    ],
    ids=["one-alloc", "growing", "numpy"],
)
async def test_memory_bomb(module_service: KernelService, code: str) -> None:
    result, _ = await attack(module_service, code, "memory")
    assert result.status is RunStatus.MEMORY_LIMIT and result.session_reset
    assert result.notices == (
        f"Your session was reset: it ran out of memory (limit {TEST_LIMITS.memory_mb} MB).",
    )
    assert "MemoryError" in result.text


@pytest.mark.slow
async def test_fork_bomb_then_a_new_session(module_service: KernelService) -> None:
    result, _ = await attack(module_service, "import os\nwhile True:\n    os.fork()", "fork")
    assert result.status is RunStatus.PROCESS_LIMIT and result.session_reset
    assert "too many processes or threads (limit 64)" in result.notices[0]
    await new_session_works(module_service, "after-fork")


@pytest.mark.slow
async def test_thread_bomb_then_a_new_session(module_service: KernelService) -> None:
    code = (
        "import threading, time\n"
        "while True:\n    threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()"
    )
    result, _ = await attack(module_service, code, "threads")
    assert result.status is RunStatus.PROCESS_LIMIT and result.session_reset
    assert "can't start new thread" in result.text
    await new_session_works(module_service, "after-threads")


async def test_writing_to_system_paths(module_service: KernelService) -> None:
    targets = [
        "/usr/lib/nbhelp-evil",
        "/etc/passwd",
        "/bin/evil",
        "/evil",
        "/root/evil",
        f"{VENV}/evil",
        "/dev/evil",
        "/proc/sys/kernel/hostname",
    ]
    passwd_before = _read("/etc/passwd")
    code = (
        f"targets = {targets!r}\n"
        "for t in targets:\n"
        "    try:\n"
        "        with open(t, 'a') as f:\n"
        "            f.write('pwned')\n"
        "        print('WROTE', t)\n"
        "    except OSError as e:\n"
        "        print('blocked', t, type(e).__name__)"
    )
    result, _ = await attack(module_service, code, "write")
    assert result.status is RunStatus.OK
    assert "WROTE" not in result.text
    assert result.text.count("blocked") == len(targets)
    assert _read("/etc/passwd") == passwd_before
    assert not any(_exists(t) for t in targets[:6] if t != "/etc/passwd")


@pytest.mark.parametrize(
    "code",
    [
        "with open('fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 2**20)",
        "with open('/dev/shm/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 2**20)",
    ],
    ids=["home", "shm"],
)
async def test_filling_tmp(module_service: KernelService, code: str) -> None:
    free_before = shutil.disk_usage("/tmp").free
    result, _ = await attack(module_service, code, "fill")
    assert result.status is RunStatus.DISK_LIMIT and result.session_reset
    assert result.notices == (
        f"Your session was reset: it filled its {TEST_LIMITS.tmp_mb} MB of file space.",
    )
    assert "No space left on device" in result.text
    assert free_before - shutil.disk_usage("/tmp").free < 16 * 2**20  # the host disk is untouched


# -- output floods -----------------------------------------------------------------------------


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow
@pytest.mark.parametrize(
    "code",
    [
        "print('x' * 100_000_000)",
        # bypasses the kernel's own cap: one raw 20 MB frame straight onto the IOPub socket
        "get_ipython().kernel.iopub_socket.send_multipart([b'x' * 20_000_000])",
    ],
    ids=["print", "raw-frame"],
)
async def test_huge_output(module_service: KernelService, code: str) -> None:
    rss_before = _maxrss_mb()
    result, _ = await attack(module_service, code, "huge")
    assert result.status is RunStatus.OUTPUT_LIMIT and result.session_reset
    assert result.notices == (OUTPUT_NOTICE,)
    assert len(result.text.encode()) <= TEST_LIMITS.output_bytes + 1
    assert _maxrss_mb() - rss_before < 60  # the bot never held the 100 MB


async def test_a_million_tiny_prints(module_service: KernelService) -> None:
    result, _ = await attack(module_service, "for i in range(10**6):\n    print(i)", "prints")
    assert result.status is RunStatus.OUTPUT_LIMIT and result.output_truncated
    assert result.session_reset and result.notices == (OUTPUT_NOTICE,)
    assert result.text.startswith("0\n1\n2\n3\n")
    assert len(result.text.encode()) <= TEST_LIMITS.output_bytes


# -- crashes and signals -----------------------------------------------------------------------


async def test_segfault(module_service: KernelService) -> None:
    result, _ = await attack(module_service, "import ctypes\nctypes.string_at(0)", "segv")
    assert result.status is RunStatus.CRASHED and result.session_reset
    assert result.notices == ("Your session was reset: the kernel crashed (killed by SIGSEGV).",)
    await new_session_works(module_service, "after-segv")


async def test_killing_parents_and_the_bot(module_service: KernelService) -> None:
    bot_pid = os.getpid()
    code = (
        "import os, signal, ctypes\n"
        f"for target in (1, os.getppid(), {bot_pid}):\n"
        "    try:\n"
        "        os.kill(target, signal.SIGKILL)\n"
        "        print('sent', target)\n"
        "    except OSError as e:\n"
        "        print('denied', target, type(e).__name__)\n"
        f"print('ptrace', ctypes.CDLL(None, use_errno=True).ptrace(16, {bot_pid}, 0, 0))\n"
        "print('still alive')"
    )
    result, _ = await attack(module_service, code, "kill")
    assert result.status is RunStatus.OK
    # PID 1 of a namespace ignores SIGKILL from inside; the bot's pid does not exist in there
    assert result.text == (
        f"sent 1\nsent 1\ndenied {bot_pid} ProcessLookupError\nptrace -1\nstill alive\n"
    )
    assert module_service.available


# -- secrets -----------------------------------------------------------------------------------


async def test_environment_proc_and_files_hold_no_secrets(
    module_service: KernelService, protected: Protected
) -> None:
    assert os.environ["NBHELP_TELEGRAM__TOKEN"] == ENV_SECRET  # the bot does have it
    assert DB_SECRET.encode() in protected.db.read_bytes()
    paths = [str(p) for p in protected.paths]
    code = (
        "import os, glob\n"
        "print(open('/proc/1/environ', 'rb').read())\n"
        "print(open('/proc/self/environ', 'rb').read())\n"
        "print(dict(os.environ))\n"
        "for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
        "    print(p, open(p, 'rb').read())\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        print(p, open(p, 'rb').read() if os.path.isfile(p) else os.listdir(p))\n"
        "    except OSError as e:\n"
        "        print('absent', p, type(e).__name__)\n"
        "print(os.listdir('/'), os.path.exists('/work/main/pyproject.toml'))"
    )
    result, _ = await attack(module_service, code, "secrets")  # Runner checks no secret leaked
    assert result.status is RunStatus.OK
    assert result.text.count("absent") == len(paths)
    assert "False\n" in result.text.splitlines(keepends=True)[-1]
    assert "NBHELP" not in result.text


async def test_tcp_to_the_hosts_loopback(
    module_service: KernelService, listener: tuple[Listener, int]
) -> None:
    lst, port = listener
    host_ip = socket.gethostbyname(socket.gethostname())
    code = (
        "import socket\n"
        f"for host in ('127.0.0.1', 'localhost', {host_ip!r}):\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=2)\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as e:\n"
        "        print('failed', host, type(e).__name__)"
    )
    result, _ = await attack(module_service, code, "tcp")
    assert "CONNECTED" not in result.text and result.text.count("failed") == 3
    assert lst.connections == 0


async def test_dns_lookup_fails(module_service: KernelService) -> None:
    code = (
        "import socket, os\n"
        "try:\n"
        "    print(socket.getaddrinfo('example.com', 443))\n"
        "except OSError as e:\n"
        "    print('dns failed', type(e).__name__)\n"
        "print(os.path.exists('/etc/resolv.conf'))"
    )
    result, _ = await attack(module_service, code, "dns")
    assert result.text == "dns failed gaierror\nFalse\n"


async def test_os_system_curl(
    module_service: KernelService, listener: tuple[Listener, int]
) -> None:
    lst, port = listener
    code = (
        "import os\n"
        f"os.system('curl -sS -m 3 -o /dev/null http://127.0.0.1:{port}/; echo curl-exit=$?')\n"
        "os.system('curl -sS -m 3 -o /dev/null https://example.com/; echo curl-exit=$?')"
    )
    result, _ = await attack(module_service, code, "curl")
    exits = re.findall(r"curl-exit=(\d+)", result.text)
    assert len(exits) == 2 and "0" not in exits, result.text
    assert lst.connections == 0


async def test_second_user_cannot_reach_the_first(module_service: KernelService) -> None:
    alice = Runner(module_service, "alice")
    await alice.ok(
        "password = 'alice-secret-var'\n"
        "open('/home/user/diary.txt', 'w').write('alice-secret-file')\n"
        "open('/dev/shm/alice', 'w').write('alice-secret-shm')"
    )
    code = (
        "import os, gc\n"
        "found = []\n"
        "for top in ('/home', '/tmp', '/dev/shm', '/run'):\n"
        "    for root, dirs, files in os.walk(top):\n"
        "        for f in files:\n"
        "            try:\n"
        "                if b'alice-secret' in open(os.path.join(root, f), 'rb').read(1 << 20):\n"
        "                    found.append(os.path.join(root, f))\n"
        "            except OSError:\n"
        "                pass\n"
        "pids = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
        "print('found', found, 'password' in globals(), pids)"
    )
    result, _ = await attack(module_service, code, "bob")
    assert result.status is RunStatus.OK, result.text
    assert result.text == "found [] False ['1', '2']\n"
    assert await alice.ok("print(password)") == "alice-secret-var\n"


@pytest.mark.slow
async def test_background_output_flood_is_cut_off(module_service: KernelService) -> None:
    run = Runner(module_service, "background-flood")
    # raw frames: a hostile flood that skips the kernel's own output caps
    code = (
        "import threading, time\n"
        "socket = get_ipython().kernel.iopub_socket\n"
        "def spam():\n"
        "    time.sleep(0.3)\n"
        "    while True:\n"
        "        socket.send_multipart([b'z' * 1_000_000])\n"
        "        time.sleep(0.01)\n"
        "threading.Thread(target=spam, daemon=True).start()\n"
        "print('started')"
    )
    assert await run.ok(code) == "started\n"
    kernel = module_service._sessions[run.session].kernel
    assert isinstance(kernel, LocalKernel) and kernel.conn is not None
    # the bot stops listening once the flood outside any run passes its budget
    await asyncio.wait_for(kernel.conn.broken.wait(), 30)
    result = await run("print('next')")
    assert result.status is RunStatus.OK and result.text == "next\n"
    assert result.session_reset
    assert "sent more than" in result.notices[0] and "between runs (a flood)" in result.notices[0]
