"""The resource fence under attack, in real sandboxed kernels (issue 10, "What got through").

Each attack asserts what the user is told, that a host counter or the sandbox's memory stayed
within bounds, and (through ``attack``) that another user's session answered meanwhile. Every
payload is bounded from outside (a few hundred MB at most, loops with a fixed count), so a
broken fence costs this machine little, and nothing but the test's own sandboxes is killed.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from bot.kernels import KernelService, RunStatus
from bot.kernels import fence as fc
from bot.kernels.cgroups import NoDelegation, find_delegation
from bot.kernels.local import LocalBackend
from bot.kernels.process import LocalKernel
from tests.kernels.helpers import TEST_LIMITS, Runner
from tests.kernels.test_attacks import attack

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = TEST_LIMITS.memory_mb << 20
ROOT = os.geteuid() == 0
needs_x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 numbers")

# x86_64 numbers, called with invalid arguments (-1): harmless if the filter were missing,
# and then answered with EINVAL/EFAULT/EBADF instead of the filter's EPERM.
DENIED = {
    "io_setup": 206,
    "io_submit": 209,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "ptrace": 101,
    "process_vm_readv": 310,
    "perf_event_open": 298,
    "bpf": 321,
    "userfaultfd": 323,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "unshare": 272,
    "setns": 308,
    "fsopen": 430,
    "open_tree": 428,
    "move_mount": 429,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "reboot": 169,
    "memfd_create": 319,
    "shmget": 29,
    "shmat": 30,
    "shmctl": 31,
    "msgget": 68,
    "semget": 64,
}


HOST_PYTHON = (os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix))


def _counter(name: str) -> int:
    """A host-wide counter under /proc/sys."""
    return int(Path(f"/proc/sys/{name}").read_text())


def kernel_of(service: KernelService, runner: Runner) -> LocalKernel:
    kernel = service._sessions[runner.session].kernel
    assert isinstance(kernel, LocalKernel) and kernel.root_pid is not None
    return kernel


def backend_of(service: KernelService) -> LocalBackend:
    backend = service._backend
    assert isinstance(backend, LocalBackend)
    return backend


def charged(kernel: LocalKernel) -> fc.SandboxMemory:
    assert kernel.root_pid is not None
    return fc.sandbox_memory(kernel.root_pid, "/home/user")


# -- the syscall filter ----------------------------------------------------------------------


@needs_x86_64
async def test_each_denied_call_fails_inside_a_real_sandbox(module_service: KernelService) -> None:
    code = (
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        f"for name, nr in {DENIED!r}.items():\n"
        "    res = libc.syscall(nr, -1, -1, -1, -1, -1, -1)\n"
        "    print(name, res, errno.errorcode.get(ctypes.get_errno()))\n"
        # clone3 is absent (glibc falls back to clone); clone with a namespace flag is refused
        "print('clone3', libc.syscall(435, 0, 0), errno.errorcode[ctypes.get_errno()])\n"
        "flags = 0x10000000 | 0x00010000  # CLONE_NEWUSER | CLONE_THREAD: EINVAL if unfiltered\n"
        "print('clone-newuser', libc.syscall(56, flags, 0, 0, 0, 0),"
        " errno.errorcode[ctypes.get_errno()])\n"
        # the i386 ABI through int 0x80 (getpid = 20): refused as a foreign ABI
        "import mmap\n"
        "buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "buf.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')\n"
        "addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\n"
        "print('int80-getpid', ctypes.CFUNCTYPE(ctypes.c_int)(addr)())\n"
        "import threading, subprocess\n"
        "t = threading.Thread(target=print, args=('threads work',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'fork works'], capture_output=True, text=True).stdout)"
    )
    result, _ = await attack(module_service, code, "syscalls")
    assert result.status is RunStatus.OK, result.text
    lines = dict(line.split(" ", 1) for line in result.text.splitlines() if " " in line)
    for name in DENIED:
        assert lines[name] == "-1 EPERM", (name, lines[name])
    assert lines["clone3"] == "-1 ENOSYS" and lines["clone-newuser"] == "-1 EPERM"
    assert lines["int80-getpid"] == "-38"  # -ENOSYS: the i386 table is not reachable
    assert "threads work" in result.text and "fork works" in result.text


async def test_aio_contexts_of_the_host_are_untouched(module_service: KernelService) -> None:
    before = _counter("fs/aio-nr")
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "ctx = ctypes.c_ulong(0)\n"
        "print('io_setup', libc.syscall(206, 4096, ctypes.byref(ctx)), ctypes.get_errno())\n"
        "params = ctypes.create_string_buffer(120)\n"
        "print('io_uring', libc.syscall(425, 8, params), ctypes.get_errno())"
    )
    result, order = await attack(module_service, code, "aio")
    assert result.status is RunStatus.OK
    assert result.text == "io_setup -1 1\nio_uring -1 1\n"  # EPERM, told as any failed call
    assert _counter("fs/aio-nr") - before < 4096
    assert "bystander" in order


# -- memory no rlimit counts -----------------------------------------------------------------


async def test_memfd_sysv_and_shared_anonymous_memory_are_bounded(
    module_service: KernelService,
) -> None:
    code = (
        "import os, ctypes, mmap\n"
        "held = []\n"
        "try:\n"
        "    for i in range(4):  # at most 240 MB even if memfd were allowed\n"
        "        fd = os.memfd_create(f'm{i}')\n"
        "        os.posix_fallocate(fd, 0, 60 << 20)\n"
        "        held.append(fd)\n"
        "except OSError as e:\n"
        "    print('memfd', type(e).__name__, e.errno)\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('shmget', libc.shmget(0, 60 << 20, 0o1600), ctypes.get_errno())\n"
        "try:\n"
        "    m = mmap.mmap(-1, 2 << 30)  # shared anonymous: counted by RLIMIT_AS\n"
        "    print('mapped 2 GB')\n"
        "except OSError as e:\n"
        "    print('mmap', type(e).__name__)\n"
        "print('held', len(held))"
    )
    runner = Runner(module_service, "attacker:memfd")
    result, order = await attack(module_service, code, "memfd")
    assert result.status is RunStatus.OK, result.text
    assert result.text == "memfd PermissionError 1\nshmget -1 1\nmmap OSError\nheld 0\n"
    memory = charged(kernel_of(module_service, runner))
    assert memory.shmem < 16 << 20 and memory.total < LIMIT * 1.1
    assert "bystander" in order


async def test_children_left_running_are_stopped_after_the_run(
    module_service: KernelService,
) -> None:
    runner = Runner(module_service, "attacker:children")
    await runner.ok("kept = 'state survives'")
    code = (
        "import subprocess, sys, os\n"
        "hog = 'x = bytearray(100 << 20)\\nimport time\\ntime.sleep(600)'\n"
        "kids = [subprocess.Popen([sys.executable, '-c', hog], start_new_session=True)"
        " for _ in range(3)]\n"
        "os.system('(sleep 600 &)')  # a double fork: re-parented to PID 1\n"
        "print('started', len(kids))"
    )
    result, order = await attack(module_service, code, "children")
    assert result.status is RunStatus.OK and result.text == "started 3\n"
    assert result.notices == (fc.strays_notice(4),)
    kernel = kernel_of(module_service, runner)
    assert kernel.root_pid is not None
    assert fc.stray_pids(kernel.root_pid) == []
    assert charged(kernel).total < LIMIT * 1.1
    assert await runner.ok("print(kept)") == "state survives\n"  # the kernel itself lives on
    assert "bystander" in order


@pytest.mark.skipif(not ROOT, reason="the inode cap needs the bot to run as root")
async def test_a_million_empty_files_hit_the_inode_cap(module_service: KernelService) -> None:
    max_files = backend_of(module_service).fence_settings.max_files
    code = (
        "import os\n"
        "os.makedirs('many', exist_ok=True)\n"
        "n = 0\n"
        "for i in range(20_000):  # bounded even without a cap\n"
        "    open(f'many/{i}', 'w').close()\n"
        "    n += 1"
    )
    runner = Runner(module_service, "attacker:inodes")
    await runner.ok("pass")
    kernel = kernel_of(module_service, runner)
    assert kernel.root_pid is not None
    result, order = await attack(module_service, code, "inodes")
    assert result.status is RunStatus.DISK_LIMIT and result.session_reset
    assert "No space left on device" in result.text
    assert result.notices == (
        f"Your session was reset: it filled its {TEST_LIMITS.tmp_mb} MB of file space.",
    )
    assert "bystander" in order
    assert max_files < 20_000


@pytest.mark.skipif(not ROOT, reason="the sandbox's own devpts needs the bot to run as root")
async def test_ptys_come_from_the_sandboxs_own_devpts(module_service: KernelService) -> None:
    ptys = backend_of(module_service).fence_settings.max_ptys
    before = _counter("kernel/pty/nr")
    code = (
        "import os\n"
        "held = []\n"
        "try:\n"
        "    for _ in range(16):\n"
        "        held.append(os.openpty())\n"
        "except OSError as e:\n"
        "    print(type(e).__name__, e.errno)\n"
        "print('ptys', len(held))"
    )
    runner = Runner(module_service, "attacker:ptys")
    result, _ = await attack(module_service, code, "ptys")
    assert result.status is RunStatus.OK
    assert result.text == f"OSError 28\nptys {ptys}\n"  # ENOSPC past devpts max=
    assert _counter("kernel/pty/nr") - before < 16
    await runner.ok("[(os.close(a), os.close(b)) for a, b in held]")


# -- less to learn from inside ---------------------------------------------------------------


@pytest.mark.skipif(not ROOT, reason="neutral paths are staged by the root launcher")
async def test_no_host_path_is_visible_inside(module_service: KernelService) -> None:
    backend = backend_of(module_service)
    code = (
        "import os, sys, glob\n"
        "for p in ['/proc/1/cmdline', '/proc/self/cmdline', '/proc/self/mountinfo',"
        " '/opt/venv/pyvenv.cfg']:\n"
        "    print(p, open(p, 'rb').read())\n"
        "print(sys.prefix, sys.base_prefix, sys.executable, sys.path)\n"
        "for p in glob.glob('/opt/venv/bin/*') + glob.glob('/opt/venv/lib/*/site-packages/*.pth'):\n"
        "    print(p, os.readlink(p) if os.path.islink(p) else open(p, 'rb').read(200))\n"
        "print(dict(os.environ))"
    )
    result, _ = await attack(module_service, code, "paths")
    assert result.status is RunStatus.OK, result.text
    text = result.text
    assert "sys.prefix" not in text and "/opt/venv /opt/python /opt/venv/bin/python" in text
    for host in {
        *HOST_PYTHON,
        str(backend.run_dir),
        "/root",
        "/work/",
        "nbhelp-run-",
    }:
        assert host not in text, host


async def test_no_file_descriptor_of_the_bot_reaches_the_sandbox(
    module_service: KernelService,
) -> None:
    backend = backend_of(module_service)
    code = (
        "import os\n"
        "found = []\n"
        "for f in sorted(int(f) for f in os.listdir('/proc/self/fd')):\n"
        "    try:\n"
        "        found.append((f, os.readlink(f'/proc/self/fd/{f}')))\n"
        "    except OSError:\n"
        "        pass  # listdir's own directory fd, closed by now\n"
        "print(found)"
    )
    returncode, out, err = await backend.run_script(code)
    assert returncode == 0, err
    fds = dict(eval(out.decode()))
    assert set(fds) == {0, 1, 2}, fds  # stdin, stdout, stderr: nothing of the bot's


# -- which fence is active -------------------------------------------------------------------


async def test_the_fallback_fence_says_what_it_is(module_service: KernelService) -> None:
    backend = backend_of(module_service)
    assert backend.fence is not None and backend.fence.seccomp is not None
    lines = backend.fence_description()
    if backend.fence.cgroups is None:
        assert lines[0] == (
            "memory fence: per-process limits — run under systemd with Delegate=yes for full limits"
        )
        assert any("incl. memfd and SysV IPC" in line for line in lines)
    assert any(line.startswith("syscall filter: seccomp") for line in lines)
    assert any(line == "background processes: stopped after each run" for line in lines)


async def test_cgroup_v2_fence_where_the_host_delegates_one() -> None:
    found = find_delegation()
    if isinstance(found, NoDelegation):
        pytest.skip(f"no delegated cgroup v2 subtree here: {found.reason}")
    service = KernelService(TEST_LIMITS)
    try:
        await service.start()
        await service.wait_until_warm(1)
        backend = backend_of(service)
        assert backend.fence is not None and backend.fence.cgroups is not None
        runner = Runner(service, "cgroup")
        await runner.ok("pass")
        kernel = kernel_of(service, runner)
        assert kernel.cgroup is not None
        assert (kernel.cgroup / "memory.max").read_text().strip() == str(LIMIT)
        assert kernel.root_pid in backend.fence.cgroups.procs(kernel.cgroup) or (
            backend.fence.cgroups.procs(kernel.cgroup)
        )
        code = (
            "import os\nheld = []\n"
            "for i in range(24):\n"
            "    fd = os.memfd_create(f'm{i}')\n"
            "    os.posix_fallocate(fd, 0, 60 << 20)\n"
            "    held.append(fd)"
        )
        result = await runner(code)
        assert result.session_reset  # memory.max + memory.oom.group killed the sandbox
        assert backend.fence.cgroups.memory_peak(kernel.cgroup) <= LIMIT * 1.1 or (
            not kernel.cgroup.exists()
        )
    finally:
        await service.aclose()
