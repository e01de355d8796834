"""The sandbox launcher. Runs OUTSIDE the sandbox, between the bot and bubblewrap.

The bot passes this file's source to ``python -I -S -c`` with a JSON config as the only
argument (nothing here may import ``bot``). In order, each step only if configured:

1. join the sandbox's cgroup (so everything bwrap starts is charged to it from the first
   instruction: no window in which a process could fork outside it);
2. (bot running as root) enter a private mount namespace and stage there, invisible to the
   host and to other sandboxes:

   - read-only overlays of the interpreter and the virtualenv (plus a small patch layer that
     re-points the venv at its neutral path). Layers are given to overlayfs as
     ``/proc/self/fd/N`` of directories this process opened, so the mount table inside the
     sandbox names no host path;
   - the file space: a tmpfs with a byte AND an inode cap (``size=``, ``nr_inodes=``; bwrap
     0.8's ``--size`` has no inode option), holding ``home`` and ``shm``;
   - a devpts instance of its own with ``max=`` pseudo-terminals;

3. exec ``argv`` (``setpriv`` dropping to the sandbox's uid, then bwrap). Directory fds are
   close-on-exec: none reaches the sandbox.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc: Any, source: str, target: str, fstype: str, flags: int, data: str) -> None:
    _check(
        libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()),
        f"mount {fstype} on {target}",
    )


def stage(libc: Any, spec: dict[str, Any]) -> None:
    kind = spec["type"]
    target = spec["target"]
    if kind == "overlay":
        fds = [
            os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for layer in spec["layers"]
        ]
        try:
            lower = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
            flags = MS_RDONLY | MS_NOSUID | MS_NODEV
            _mount(libc, "overlay", target, "overlay", flags, f"lowerdir={lower}")
        finally:
            for fd in fds:
                os.close(fd)
    elif kind == "tmpfs":
        uid = spec["uid"]
        data = f"size={spec['size']},nr_inodes={spec['nr_inodes']},mode=0711"
        _mount(libc, "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, data)
        for name in spec["dirs"]:
            path = os.path.join(target, name)
            os.mkdir(path, 0o700)
            os.chown(path, uid, uid)
    elif kind == "devpts":
        data = f"newinstance,ptmxmode=0666,mode=0620,max={spec['max']}"
        _mount(libc, "devpts", target, "devpts", MS_NOSUID | MS_NOEXEC, data)
    else:
        raise ValueError(f"unknown stage type {kind!r}")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg.get("cgroup"):
        with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    if cfg.get("stage"):
        libc = _libc()
        _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        for spec in cfg["stage"]:
            stage(libc, spec)
    argv = cfg["argv"]
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
