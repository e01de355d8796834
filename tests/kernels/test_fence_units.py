"""Fast tests of the resource fence: the seccomp program, cgroup v2 against a fake cgroupfs,
the bwrap hand-off, neutral paths, and the GPU's /sys binds against a fake /sys."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from bot.kernels import KernelLimits
from bot.kernels import fence as fc
from bot.kernels import sandbox as sb
from bot.kernels.cgroups import (
    CgroupLimits,
    Delegation,
    KernelCgroups,
    NoDelegation,
    find_delegation,
)
from bot.kernels.fence_settings import FenceSettings
from bot.kernels.seccomp import compile_policy, policy_text

# -- seccomp ---------------------------------------------------------------------------------

REQUIRED = (
    "io_setup",
    "io_uring_setup",
    "add_key",
    "request_key",
    "keyctl",
    "ptrace",
    "perf_event_open",
    "bpf",
    "userfaultfd",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "fsopen",
    "init_module",
    "finit_module",
    "kexec_load",
    "reboot",
)
MEMORY = ("memfd_create", "shmget", "shmat", "msgget", "semget")


def test_seccomp_program_denies_the_policy_and_refuses_foreign_abis() -> None:
    program = compile_policy(memory_cgroup=False)
    assert set(REQUIRED) <= set(program.denied)
    assert set(MEMORY) <= set(program.denied) and program.memory_rules
    assert program.rejects_x32()  # x32 numbers go to the bad-arch action (ENOSYS)
    assert len(program.bpf) % 8 == 0 and program.bpf
    # sockets are never filtered: ipykernel needs loopback TCP and netlink
    assert not {"socket", "connect", "bind", "sendto"} & set(program.denied)


def test_with_a_memory_cgroup_memfd_and_sysv_are_left_to_the_cgroup() -> None:
    program = compile_policy(memory_cgroup=True)
    assert set(REQUIRED) <= set(program.denied)
    assert not set(MEMORY) & set(program.denied) and not program.memory_rules
    text = policy_text(memory_cgroup=False)
    assert "io_setup: Operation not permitted" in text and "foreign ABI" in text


# -- cgroup v2 against a fake cgroupfs -------------------------------------------------------

INTERFACE = ("memory.max", "memory.swap.max", "pids.max", "cpu.max", "cgroup.procs")


class FakeCgroups(KernelCgroups):
    """A cgroupfs stand-in: mkdir populates interface files, rmdir fails while populated."""

    def _mkdir(self, path: Path) -> None:
        path.mkdir(exist_ok=True)
        for name in INTERFACE:
            (path / name).touch()
        (path / "cgroup.subtree_control").touch()

    def _rmdir(self, path: Path) -> None:
        if (path / "cgroup.procs").read_text().strip():
            raise OSError(16, "Device or resource busy")
        for child in path.iterdir():
            child.unlink()
        path.rmdir()

    def _write(self, path: Path, text: str) -> None:
        if path.name == "cgroup.kill":
            (path.parent / "cgroup.procs").write_text("")  # the kernel kills everything
        if path.name == "cgroup.procs":  # a move: append here, the real kernel removes it there
            path.write_text(path.read_text() + text + "\n")
            return
        if path.name == "cgroup.subtree_control":
            enabled = set(path.read_text().split())
            enabled |= {w[1:] for w in text.split() if w.startswith("+")}
            path.write_text(" ".join(sorted(enabled)))
            return
        path.write_text(text)


def _fake_hierarchy(tmp_path: Path, cgroup: str, controllers: str) -> tuple[Path, Path, Path]:
    mount = tmp_path / "cgroup"
    own = mount / cgroup.lstrip("/") if cgroup != "/" else mount
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    for name in ("cgroup.procs", "cgroup.subtree_control"):
        (own / name).write_text("")
    proc_cgroup = tmp_path / "proc-cgroup"
    proc_cgroup.write_text(f"4:memory:/x\n0::{cgroup}\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"30 20 0:26 / {tmp_path}/v1 rw - cgroup cgroup rw,memory\n"
        f"31 20 0:27 / {mount} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    return own, proc_cgroup, mountinfo


def test_a_hybrid_host_without_controllers_is_not_used(tmp_path: Path) -> None:
    _, proc_cgroup, mountinfo = _fake_hierarchy(tmp_path, "/", "")
    found = find_delegation(proc_cgroup, mountinfo)
    assert isinstance(found, NoDelegation) and "memory/pids/cpu" in found.reason


def test_the_hosts_root_cgroup_is_never_taken(tmp_path: Path) -> None:
    _, proc_cgroup, mountinfo = _fake_hierarchy(tmp_path, "/", "cpu memory pids")
    found = find_delegation(proc_cgroup, mountinfo)  # no memory.max: the real root
    assert isinstance(found, NoDelegation) and "not delegated" in found.reason


def test_an_undelegated_service_cgroup_is_never_taken(tmp_path: Path) -> None:
    _, proc_cgroup, mountinfo = _fake_hierarchy(
        tmp_path, "/system.slice/nbhelp.service", "cpu memory pids"
    )
    found = find_delegation(proc_cgroup, mountinfo)
    assert isinstance(found, NoDelegation) and "not delegated" in found.reason


def test_a_containers_namespace_root_is_delegated(tmp_path: Path) -> None:
    own, proc_cgroup, mountinfo = _fake_hierarchy(tmp_path, "/", "cpu io memory pids")
    (own / "memory.max").write_text("max\n")
    found = find_delegation(proc_cgroup, mountinfo)
    assert found == Delegation(root=own, own=own)


def test_a_systemd_delegated_unit_is_found_by_its_xattr(tmp_path: Path) -> None:
    own, proc_cgroup, mountinfo = _fake_hierarchy(
        tmp_path, "/system.slice/nbhelp.service", "cpu memory pids"
    )
    try:
        os.setxattr(own, "user.delegate", b"1")
    except OSError as exc:
        pytest.skip(f"this file system has no user xattrs ({exc})")
    assert find_delegation(proc_cgroup, mountinfo) == Delegation(root=own, own=own)


async def test_kernel_cgroups_layout_limits_kill_and_removal(tmp_path: Path) -> None:
    root = tmp_path / "delegated"
    root.mkdir()
    (root / "cgroup.procs").write_text("4242\n")  # the bot itself lives in the delegated cgroup
    (root / "cgroup.subtree_control").write_text("")
    stale = root / "nbhelp-kernels-999999999"  # a dead bot's parent, with a leftover sandbox
    (stale / "k1").mkdir(parents=True)
    (stale / "k1" / "cgroup.procs").write_text("")
    (stale / "cgroup.procs").write_text("")
    (root / "someone-else").mkdir()  # not ours: never touched
    total = CgroupLimits(memory_bytes=4 << 30, pids=640, cpus=2.0)
    cgroups = FakeCgroups(Delegation(root=root, own=root), total)
    cgroups.setup()
    assert not stale.exists() and (root / "someone-else").exists()
    assert (root / "nbhelp-supervisor" / "cgroup.procs").read_text().split() == ["4242"]
    assert set((root / "cgroup.subtree_control").read_text().split()) == {"cpu", "memory", "pids"}
    parent = cgroups.parent
    assert parent.parent == root and parent.name == f"nbhelp-kernels-{os.getpid()}"
    assert (parent / "memory.max").read_text() == str(4 << 30)
    assert (parent / "cpu.max").read_text() == "200000 100000"
    assert (parent / "pids.max").read_text() == "640"

    child = cgroups.create("k7", CgroupLimits(memory_bytes=1 << 30, pids=64, cpus=1.0))
    assert child == parent / "k7"
    assert (child / "memory.max").read_text() == str(1 << 30)
    assert (child / "memory.swap.max").read_text() == "0"
    assert (child / "memory.oom.group").read_text() == "1"
    assert (child / "pids.max").read_text() == "64" and (child / "cpu.max").read_text() == (
        "100000 100000"
    )
    with pytest.raises(ValueError):
        cgroups.create("../escape", CgroupLimits(memory_bytes=1, pids=1))
    (child / "cgroup.procs").write_text("123\n")
    (child / "cgroup.kill").touch()
    assert await cgroups.remove(child) and not child.exists()
    await cgroups.aclose()
    assert not parent.exists()


async def test_fence_prepare_uses_a_delegated_subtree_and_describes_it(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    for name in ("cgroup.procs", "cgroup.subtree_control"):
        (root / name).write_text("")

    class Prepared(FakeCgroups):
        pass

    limits = KernelLimits()
    fence = await fc.prepare(
        FenceSettings(), limits, root_mode=True, delegation=NoDelegation("hybrid host")
    )
    assert fence.cgroups is None and fence.cgroup_reason == "hybrid host"
    lines = fence.describe()
    assert lines[0] == (
        "memory fence: per-process limits — run under systemd with Delegate=yes for full limits"
    )
    assert any("memfd and SysV IPC" in line for line in lines)
    assert any("4096 files" in line for line in lines)
    off = await fc.prepare(FenceSettings(cgroup="off", seccomp=False), limits, root_mode=False)
    assert "turned off" in off.cgroup_reason and off.seccomp is None
    assert any("files not capped" in line for line in off.describe())
    fence.cgroups = Prepared(Delegation(root, root), CgroupLimits(1 << 30, 64))
    assert fence.describe()[0].startswith("memory fence: cgroup v2 (1024 MB per sandbox")
    await asyncio.sleep(0)


# -- the hand-off to bwrap -------------------------------------------------------------------


def test_pack_moves_options_behind_an_fd_and_hides_run_dir_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "passwd").write_text("user:x:1000\n")
    argv = [
        "/usr/bin/bwrap",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        str(run / "passwd"),
        "/etc/passwd",
        "--",
        "/opt/venv/bin/python",
        "-c",
        "print(1)",
    ]
    with fc.Handoff() as handoff:
        packed = fc.pack(argv, handoff, hide=(run,))
        assert packed[:2] == ["/usr/bin/bwrap", "--args"]
        assert packed[3:] == ["--", "/opt/venv/bin/python", "-c", "print(1)"]
        blob = os.pread(int(packed[2]), 1 << 16, 0).split(b"\0")
        assert str(run).encode() not in b"".join(blob)
        data_fd = int(blob[blob.index(b"--ro-bind-data") + 1])
        assert os.pread(data_fd, 100, 0) == b"user:x:1000\n"
        assert blob[:3] == [b"--ro-bind", b"/usr", b"/usr"]
        fds = list(handoff.fds)
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_bwrap_argv_with_the_staged_fence(tmp_path: Path) -> None:
    layout = sb.SandboxLayout(
        bwrap="bwrap",
        python="/opt/venv/bin/python",
        ro_binds=((tmp_path / "root-0", "/opt/venv"),),
        connection_file=tmp_path / "c.json",
        etc_dir=tmp_path / "etc",
        empty_file=tmp_path / "empty",
        empty_dir=tmp_path / "empty.d",
        seccomp_fd=9,
        file_space=tmp_path / "files",
        devpts=tmp_path / "pts",
    )
    argv = sb.bwrap_argv(layout, KernelLimits())
    assert argv[argv.index("--seccomp") + 1] == "9"
    home = argv.index(sb.HOME)
    assert argv[home - 2 : home] == ["--bind", str(tmp_path / "files" / "home")]
    shm = argv.index("/dev/shm")
    assert argv[shm - 2 : shm] == ["--bind", str(tmp_path / "files" / "shm")]
    pts = argv.index("/dev/pts")
    assert argv[pts - 2 : pts] == ["--dev-bind", str(tmp_path / "pts")]
    assert argv.index("--dev") < pts < argv.index("--remount-ro", pts)
    # without a staged devpts there are no ptys at all
    plain = sb.bwrap_argv(sb.SandboxLayout(**{**_fields(layout), "devpts": None}), KernelLimits())
    pts = plain.index("/dev/pts")
    assert plain[pts - 1] == "--tmpfs" and plain[pts + 1 : pts + 3] == ["--remount-ro", "/dev/pts"]


def _fields(layout: sb.SandboxLayout) -> dict[str, object]:
    return {name: getattr(layout, name) for name in layout.__dataclass_fields__}


# -- neutral paths ---------------------------------------------------------------------------


def test_patch_layer_repoints_a_venv_at_its_neutral_path(tmp_path: Path) -> None:
    base = tmp_path / "root" / ".pyenv" / "3.11"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3.11").write_text("ELF")
    (base / "bin" / "pip3").write_text(f"#!{base}/bin/python3.11\nimport pip\n")
    lib = base / "lib" / "python3.11"
    lib.mkdir(parents=True)
    (lib / "_sysconfigdata__linux.py").write_text(f"build_time_vars = {{'prefix': '{base}'}}\n")
    venv = tmp_path / "work" / "project" / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "nbhelp-0.1.dist-info").mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "pyvenv.cfg").write_text(
        f"home = {base}/bin\nversion = 3.11.7\ncommand = {base}/bin/python3 -m venv {venv}\n"
    )
    (venv / "bin" / "python3").symlink_to(base / "bin" / "python3.11")
    (venv / "bin" / "python").symlink_to("python3")
    (venv / "bin" / "jupyter").write_text(f"#!{venv}/bin/python\nimport jupyter\n")
    (site / "__editable__.nbhelp-0.1.pth").write_text("import __editable___nbhelp_finder\n")
    (site / "__editable___nbhelp_finder.py").write_text(f"MAPPING = {{'bot': '{tmp_path}/work'}}\n")
    (site / "project.pth").write_text("/work/project/src\n")
    (site / "distutils-precedence.pth").write_text("import os\n")
    (site / "nbhelp-0.1.dist-info" / "direct_url.json").write_text(
        '{"dir_info": {"editable": true}, "url": "file:///work/project"}'
    )
    mapping = fc.neutral_roots([venv, base])
    assert mapping == [(venv, "/opt/venv"), (base, "/opt/python")]
    assert fc.inside_path(venv / "bin" / "python", mapping) == "/opt/venv/bin/python"
    patch = tmp_path / "patch"
    assert fc.build_patch(venv, mapping, patch) > 0
    cfg = (patch / "pyvenv.cfg").read_text()
    assert "home = /opt/python/bin" in cfg and "command" not in cfg and str(tmp_path) not in cfg
    assert os.readlink(patch / "bin" / "python3") == "/opt/python/bin/python3.11"
    assert not (patch / "bin" / "python").exists()  # relative links need nothing
    assert (patch / "bin" / "jupyter").read_text().startswith("#!/opt/venv/bin/python\n")
    for name in ("__editable__.nbhelp-0.1.pth", "__editable___nbhelp_finder.py", "project.pth"):
        assert (patch / site.relative_to(venv) / name).read_text() == ""
    assert not (patch / site.relative_to(venv) / "distutils-precedence.pth").exists()
    direct = patch / site.relative_to(venv) / "nbhelp-0.1.dist-info" / "direct_url.json"
    assert direct.read_text() == "{}\n"
    base_patch = tmp_path / "base-patch"
    fc.build_patch(base, mapping, base_patch)
    assert (base_patch / "bin" / "pip3").read_text().startswith("#!/opt/python/bin/python3.11")
    sysconfig = base_patch / "lib" / "python3.11" / "_sysconfigdata__linux.py"
    assert "'/opt/python'" in sysconfig.read_text()


# -- GPU hosts -------------------------------------------------------------------------------


def test_gpu_binds_only_the_sys_paths_nvidia_needs(tmp_path: Path) -> None:
    sys_dir = tmp_path / "sys"
    device = sys_dir / "devices" / "pci0000:00" / "0000:00:01.0" / "0000:01:00.0"
    device.mkdir(parents=True)
    (device / "numa_node").write_text("0\n")
    (sys_dir / "bus" / "pci" / "devices").mkdir(parents=True)
    (sys_dir / "bus" / "pci" / "devices" / "0000:01:00.0").symlink_to(
        "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0"
    )
    (sys_dir / "devices" / "system" / "cpu").mkdir(parents=True)
    (sys_dir / "module" / "nvidia").mkdir(parents=True)
    (sys_dir / "class" / "net" / "eth0").mkdir(parents=True)
    (sys_dir / "class" / "net" / "eth0" / "address").write_text("02:42:ac:11:00:02\n")
    gpu = sb.Gpu(name="H100", devices=(tmp_path / "nvidia0",), pci=("0000:01:00.0", "../../x"))
    args = sb.gpu_sys_binds(gpu, sys_dir)
    dests = [args[i + 2] for i, a in enumerate(args) if a == "--ro-bind"]
    assert dests == [
        "/sys/devices/system/cpu",
        "/sys/module/nvidia",
        "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0",
    ]
    assert args[-3:] == [
        "--symlink",
        "../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0",
        "/sys/bus/pci/devices/0000:01:00.0",
    ]
    sources = [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]
    assert str(sys_dir) not in sources and not any("net" in s for s in sources)
    layout = sb.SandboxLayout(
        bwrap="bwrap",
        python="/usr/bin/python3",
        ro_binds=(),
        connection_file=tmp_path / "c.json",
        etc_dir=tmp_path / "etc",
        empty_file=tmp_path / "empty",
        empty_dir=tmp_path / "empty.d",
        gpu=gpu,
        sys_dir=sys_dir,
    )
    argv = sb.bwrap_argv(layout, KernelLimits())
    assert "/sys" not in argv and "/sys/class/net" not in " ".join(argv)
    assert "RLIMIT_AS" in json.loads(argv[-1])["rlimits"]


def test_gpu_detection_records_pci_addresses(tmp_path: Path) -> None:
    (tmp_path / "nvidia0").write_text("")
    info = tmp_path / "proc" / "driver" / "nvidia" / "gpus" / "0000:01:00.0"
    info.mkdir(parents=True)
    (info / "information").write_text("Model: T4\n")
    gpu = sb.detect_gpu(tmp_path, tmp_path / "proc")
    assert gpu is not None and gpu.pci == ("0000:01:00.0",)
