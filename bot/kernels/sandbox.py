"""The bubblewrap sandbox of a local kernel: command line, environment, GPU detection.

What the kernel sees (everything else of the host is absent, not merely unreadable):

- ``/usr`` (and the ``/bin``, ``/lib``… links) and the Python interpreter + virtualenv,
  read-only, each bound on its own: never the bot's home or project directory.
- a few harmless files of ``/etc`` and a synthesized ``/etc/passwd``, ``/etc/group``,
  ``/etc/hosts``.
- a fresh ``/proc`` (its own PID namespace) and a minimal ``/dev``.
- ``/home/user``: a size-capped tmpfs (home, cwd and, through ``/tmp``, temp files).
- ``/run/kernel``: a tiny tmpfs for the ZMQ ``ipc`` sockets, plus the connection file read-only.
- with an NVIDIA GPU offered to kernels only: its ``/dev/nvidia*`` device nodes and the few
  ``/sys`` paths the driver libraries read (its PCI devices, CPU/NUMA topology, the nvidia
  module), never ``/sys`` whole (the host's network interfaces and MAC addresses live there).

The resource fence (``fence.py``) adds, when the backend provides them: a seccomp filter
(``--seccomp FD``), the file space as a staged tmpfs with an inode cap bound at ``/home/user``
and ``/dev/shm``, a devpts instance of its own with a pty maximum (otherwise no ptys at all),
and in root mode the interpreter and venv at neutral paths (``/opt/python``, ``/opt/venv``).

All namespaces are unshared (no network but a private loopback), the sandbox dies with the bot,
``/`` is remounted read-only, and bwrap itself starts from a scrubbed environment, because
``--clearenv`` does not clear the environment of bwrap's PID 1, which user code can read at
``/proc/1/environ``. Inside, the user is uid 1000, not root.

When the bot runs as root, bwrap is started as an unprivileged host uid (one per kernel) through
``setpriv``: root's processes are exempt from RLIMIT_NPROC, and a root-mapped sandbox would make
the fork-bomb limit void. The interpreter may live under ``/root`` (0700), which that uid cannot
traverse, so the launcher (``launcher.py``) first stages it, read-only, in a private mount
namespace that only this sandbox sees.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.kernels.bootstrap import BOOTSTRAP, bootstrap_config
from bot.kernels.models import KernelLimits

HOME = "/home/user"
KERNEL_DIR = "/run/kernel"
CONNECTION_FILE = f"{KERNEL_DIR}/connection.json"
SANDBOX_UID = 1000
SANDBOX_GID = 1000
BOOTSTRAP_PATH = "/usr/bin:/bin"

# Files of /etc that a Python kernel needs and that hold nothing about the bot.
ETC_ALLOWLIST = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "fonts",
    "alternatives",
    "nsswitch.conf",
    "mime.types",
)
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

INSTALL_HINT = "install it with `apt-get install bubblewrap`"
USERNS_HINT = (
    "enable unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1` "
    "(Debian), `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 23.10+), "
    "`sysctl -w user.max_user_namespaces=15000`; in a container, run it with "
    "`--security-opt seccomp=unconfined --security-opt apparmor=unconfined "
    "--security-opt systempaths=unconfined` (compose.yaml: `security_opt: [seccomp=unconfined, "
    "apparmor=unconfined, systempaths=unconfined]`), never `--privileged`; under systemd, "
    "allow `RestrictNamespaces=user mnt pid net ipc uts cgroup` (see docs/deploy.md)"
)


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    devices: tuple[Path, ...]
    pci: tuple[str, ...] = ()  # PCI addresses, e.g. "0000:01:00.0"


def detect_gpu(dev_dir: Path = Path("/dev"), proc_dir: Path = Path("/proc")) -> Gpu | None:
    """An NVIDIA GPU is present when ``/dev/nvidia*`` device nodes exist.

    The driver's user-space libraries live under /usr, which the sandbox binds already; the
    device nodes are bound with ``--dev-bind``. Without device nodes this returns None and
    nothing else changes.
    """
    try:
        devices = [p for p in sorted(dev_dir.glob("nvidia*")) if not p.is_dir()]
        caps = dev_dir / "nvidia-caps"
        if caps.is_dir():
            devices += sorted(p for p in caps.iterdir() if not p.is_dir())
    except OSError:
        return None
    if not devices:
        return None
    models: list[str] = []
    pci: list[str] = []
    for info in sorted((proc_dir / "driver" / "nvidia" / "gpus").glob("*/information")):
        pci.append(info.parent.name)
        try:
            for line in info.read_text(errors="replace").splitlines():
                if line.startswith("Model:"):
                    models.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    count = sum(1 for p in devices if p.name[len("nvidia") :].isdigit())
    name = ", ".join(models) if models else f"NVIDIA GPU ({max(count, 1)} device(s))"
    return Gpu(name=name, devices=tuple(devices), pci=tuple(pci))


# sysfs directories NVML and the CUDA driver read besides the GPU's own PCI device (unverified
# on a real GPU in this project: see docs/sandbox.md). None of them lists network interfaces.
GPU_SYS_DIRS = (
    "devices/system/cpu",
    "devices/system/node",
    "module/nvidia",
    "module/nvidia_uvm",
    "module/nvidia_modeset",
)


def gpu_sys_binds(gpu: Gpu, sys_dir: Path = Path("/sys")) -> list[str]:
    """bwrap arguments binding only the sysfs paths the NVIDIA libraries need, read-only."""
    args: list[str] = []
    for rel in GPU_SYS_DIRS:
        if (sys_dir / rel).is_dir():
            args += ["--ro-bind", str(sys_dir / rel), f"/sys/{rel}"]
    for address in gpu.pci:
        if not re.fullmatch(r"[0-9a-fA-F:.]+", address):
            continue
        link = sys_dir / "bus" / "pci" / "devices" / address
        try:
            real = link.resolve(strict=True)
        except OSError:
            continue
        devices = sys_dir.resolve() / "devices"
        if not real.is_relative_to(devices):
            continue
        inside = f"/sys/{real.relative_to(sys_dir.resolve())}"
        args += ["--ro-bind", str(real), inside]
        if link.is_symlink():
            args += ["--symlink", os.readlink(link), f"/sys/bus/pci/devices/{address}"]
    return args


def python_roots(executable: str = sys.executable) -> tuple[Path, ...]:
    """The directories the interpreter needs: the venv and the base installation, nothing more."""
    candidates = {
        Path(p).resolve()
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    candidates.add(Path(os.path.realpath(executable)).parent.parent)
    roots: list[Path] = []
    for path in sorted(candidates, key=lambda p: len(p.parts)):
        if path == Path("/") or path == Path("/usr") or _is_under(path, Path("/usr")):
            continue  # /usr is bound as a whole already
        if not any(_is_under(path, root) for root in roots):
            roots.append(path)
    return tuple(roots)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def scrubbed_env() -> dict[str, str]:
    """The whole environment bwrap (and the root wrapper) start with: nothing of the bot's."""
    return {"PATH": BOOTSTRAP_PATH, "LANG": "C.UTF-8"}


def kernel_env(python_bin_dir: str, *, home: str = HOME, gpu: bool = False) -> dict[str, str]:
    env = {
        "PATH": f"{python_bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "USER": "user",
        "LOGNAME": "user",
        "TMPDIR": f"{home}/.tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib",
        "IPYTHONDIR": f"{home}/.ipython",
        "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        # One BLAS/OpenMP thread per kernel: kernels run side by side on few cores, and every
        # thread counts against RLIMIT_NPROC.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }
    if gpu:
        env["NVIDIA_VISIBLE_DEVICES"] = "all"
    return env


@dataclass(frozen=True, slots=True)
class SandboxLayout:
    """Host-side inputs of one sandboxed kernel's command line."""

    bwrap: str
    python: str
    ro_binds: tuple[tuple[Path, str], ...]  # interpreter + extras: (host/staged source, inside)
    connection_file: Path  # host path, bound read-only at CONNECTION_FILE
    etc_dir: Path  # synthesized passwd/group/hosts
    empty_file: Path  # an empty read-only file used to mask protected files
    empty_dir: Path  # an empty read-only directory used to mask protected directories
    mpl_fontlist: Path | None = None  # prebuilt matplotlib font cache, bound read-only
    gpu: Gpu | None = None
    protected: tuple[Path, ...] = ()
    info_fd: int | None = None
    # The resource fence (see fence.py); the defaults are bwrap's plain tmpfs mounts.
    seccomp_fd: int | None = None
    file_space: Path | None = None  # staged tmpfs (bytes + inodes) holding home/ and shm/
    devpts: Path | None = None  # staged devpts with a pty maximum; None: no ptys at all
    address_space_limit: bool = True  # RLIMIT_AS; False only for GPU kernels under a cgroup
    sys_dir: Path = Path("/sys")


def system_binds(root: Path = Path("/")) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in TOP_LEVEL_LINKS:
        path = root / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    for name in ETC_ALLOWLIST:
        if (root / "etc" / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def bwrap_argv(
    layout: SandboxLayout,
    limits: KernelLimits,
    *,
    preimport: bool = True,
    command: Sequence[str] | None = None,
) -> list[str]:
    """The full bwrap command line of one kernel (or of ``command`` in the same sandbox).

    Order matters: a tmpfs must come before the binds beneath it.
    """
    tmp_bytes = limits.tmp_mb * 1024 * 1024
    args = [
        layout.bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
    ]
    if layout.info_fd is not None:
        args += ["--info-fd", str(layout.info_fd)]
    if layout.seccomp_fd is not None:
        args += ["--seccomp", str(layout.seccomp_fd)]
    args += system_binds()
    # /tmp is normally a link into the capped home. If something must be bound under /tmp, it
    # gets a capped tmpfs of its own instead, mounted before those binds (or they would vanish).
    tmp_is_mount = any(_is_under(Path(dest), Path("/tmp")) for _, dest in layout.ro_binds)
    if tmp_is_mount:
        args += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for source, dest in layout.ro_binds:
        args += ["--ro-bind", str(source), dest]
    for name in ("passwd", "group", "hosts"):
        args += ["--ro-bind", str(layout.etc_dir / name), f"/etc/{name}"]
    args += _mask_protected(layout)
    args += ["--proc", "/proc", "--dev", "/dev"]
    # /dev is a tmpfs without a size cap: /dev/shm is part of the capped file space (or a
    # capped tmpfs of its own), then /dev itself is made read-only (its device nodes are
    # separate bind mounts and keep working).
    if layout.file_space is not None:
        args += ["--bind", str(layout.file_space / "shm"), "/dev/shm"]
    else:
        args += ["--size", str(max(tmp_bytes // 4, 1 << 20)), "--tmpfs", "/dev/shm"]
    # bwrap's own devpts has no pty maximum and draws on the host-wide pool: replace it with
    # the staged instance (max=N), or hide it (no ptys).
    if layout.devpts is not None:
        args += ["--dev-bind", str(layout.devpts), "/dev/pts"]
    else:
        args += ["--size", "4096", "--tmpfs", "/dev/pts", "--remount-ro", "/dev/pts"]
    if layout.gpu is not None:
        for dev in layout.gpu.devices:
            args += ["--dev-bind", str(dev), str(dev)]
        args += gpu_sys_binds(layout.gpu, layout.sys_dir)
    args += ["--remount-ro", "/dev"]
    if layout.file_space is not None:
        args += ["--bind", str(layout.file_space / "home"), HOME]
    else:
        args += ["--size", str(tmp_bytes), "--tmpfs", HOME]
    if not tmp_is_mount:
        args += ["--symlink", f"{HOME}/.tmp", "/tmp"]
    if layout.mpl_fontlist is not None:
        target = f"{HOME}/.config/matplotlib/{layout.mpl_fontlist.name}"
        args += ["--ro-bind", str(layout.mpl_fontlist), target]
    args += ["--size", str(1 << 20), "--tmpfs", KERNEL_DIR]
    args += ["--ro-bind", str(layout.connection_file), CONNECTION_FILE]
    args += ["--remount-ro", "/", "--chdir", HOME, "--clearenv"]
    python_bin = str(Path(layout.python).parent)
    for key, value in kernel_env(python_bin, gpu=layout.gpu is not None).items():
        args += ["--setenv", key, value]
    config = bootstrap_config(
        limits,
        connection_file=CONNECTION_FILE,
        cwd=HOME,
        preimport=preimport,
        address_space=layout.address_space_limit,
    )
    args += ["--", *(command or (layout.python, "-c", BOOTSTRAP, config))]
    return args


def _bound_sources(layout: SandboxLayout) -> list[Path]:
    sources = [Path("/usr"), *(Path(dest) for _, dest in layout.ro_binds)]
    sources += [Path("/etc") / name for name in ETC_ALLOWLIST]
    return sources


def _mask_protected(layout: SandboxLayout) -> list[str]:
    """Hide protected paths that happen to lie inside a bound directory (e.g. a config under /usr).

    Paths outside every bind are simply absent from the sandbox and need nothing.
    """
    args: list[str] = []
    sources = _bound_sources(layout)
    for raw in layout.protected:
        path = Path(os.path.abspath(raw))
        candidates = {path}
        if path.exists():
            candidates.add(path.resolve())
        for candidate in sorted(candidates):
            if not any(_is_under(candidate, src) for src in sources):
                continue
            if candidate.is_dir():  # an empty read-only tmpfs: names no host path
                args += [
                    "--size",
                    "4096",
                    "--tmpfs",
                    str(candidate),
                    "--remount-ro",
                    str(candidate),
                ]
            elif candidate.exists():
                args += ["--ro-bind", str(layout.empty_file), str(candidate)]
    return args


def exposes(layout: SandboxLayout, path: Path) -> bool:
    """Whether a host path would be readable inside the sandbox (after masking)."""
    path = Path(os.path.abspath(path))
    masked = {Path(os.path.abspath(p)) for p in layout.protected}
    if any(_is_under(path, m) for m in masked):
        return False
    return any(_is_under(path, src) for src in _bound_sources(layout))


def write_etc(etc_dir: Path) -> None:
    etc_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "passwd": f"root:x:0:0::/:/usr/sbin/nologin\n"
        f"user:x:{SANDBOX_UID}:{SANDBOX_GID}::{HOME}:/bin/sh\n"
        "nobody:x:65534:65534::/:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nuser:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    }
    for name, text in files.items():
        path = etc_dir / name
        path.write_text(text)
        path.chmod(0o644)


def find_bwrap(bwrap: str | None) -> str | None:
    if not bwrap:
        return None
    if os.sep in bwrap:
        return bwrap if os.access(bwrap, os.X_OK) else None
    return shutil.which(bwrap)


def explain_failure(stderr: str) -> str:
    """Turn bwrap's complaint into a reason that names the fix."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
    lowered = stderr.lower()
    userns_words = (
        "namespace",
        "uid map",
        "uid_map",
        "setting up uid",
        "operation not permitted",
        "permission denied",
    )
    if any(word in lowered for word in userns_words):
        return f"bubblewrap cannot create its sandbox ({text}); {USERNS_HINT}"
    return f"the sandbox failed its self-test ({text})"


def missing_tools(names: Iterable[str]) -> list[str]:
    return [name for name in names if shutil.which(name, path=BOOTSTRAP_PATH) is None]
