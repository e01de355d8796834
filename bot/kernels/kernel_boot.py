"""The kernel's entry point. Runs INSIDE the sandbox, before any user code.

The bot passes this file's source to ``python -c`` with a JSON config as the only argument (the
project directory is not in the sandbox, so nothing here may import ``bot``). It:

- sets the rlimits and makes the kernel the OOM killer's first choice;
- installs cooperative output guards: long text is cut and oversized images dropped before
  serialization (an accidental 100 MB print would otherwise exhaust the kernel's memory), and
  stdout/stderr keep their order;
- forwards fd-level output (``os.system``, C extensions) completely: the pipe is drained before
  a cell reports idle, so the tail of a subprocess's output is not lost;
- starts ipykernel with numpy imported as ``np``, and ``pd`` (pandas) and ``plt``
  (matplotlib.pyplot, inline PNG backend) either imported too (``eager``) or bound to stand-ins
  that import the real module on first use (``lazy``: a kernel answers in well under half the
  CPU time; the bot completes the imports of a spare while the machine is idle).

None of this is a security boundary (user code can undo it); the bot enforces its own limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any


def set_limits(cfg: dict[str, Any]) -> None:
    import resource

    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    os.makedirs(cfg["cwd"], exist_ok=True)
    os.chdir(cfg["cwd"])
    for d in cfg["dirs"]:
        os.makedirs(d, exist_ok=True)


def guard_output_size(max_text: int, max_image: int) -> None:
    from jupyter_client import session

    serialize = session.Session.serialize

    def fit(msg: dict[str, Any]) -> dict[str, Any]:
        content = msg.get("content")
        if not isinstance(content, dict):
            return msg
        content = dict(content)
        if isinstance(content.get("text"), str):
            content["text"] = content["text"][:max_text]
        if isinstance(content.get("traceback"), list):
            content["traceback"] = [str(line)[:max_text] for line in content["traceback"][:500]]
        data = content.get("data")
        if isinstance(data, dict):
            data = dict(data)
            for key, value in list(data.items()):
                if not isinstance(value, str) or len(value) <= max_text:
                    continue
                if key == "text/plain":
                    data[key] = value[:max_text]
                elif not (key.startswith("image/") and len(value) <= max_image):
                    del data[key]
                    data["text/plain"] = "[output over the size limit left out]"
            content["data"] = data
        return dict(msg, content=content)

    def guarded(self: Any, msg: dict[str, Any], ident: Any = None) -> Any:
        return serialize(self, fit(msg), ident)

    session.Session.serialize = guarded  # type: ignore[method-assign]  # patching ipykernel in the sandbox


def keep_stream_order() -> None:
    """stdout and stderr buffer separately: flush one before writing to the other."""
    from ipykernel import iostream

    write = iostream.OutStream.write
    last: list[Any] = [None]

    def ordered_write(self: Any, string: str) -> Any:
        previous = last[0]
        if previous is not None and previous is not self:
            with contextlib.suppress(Exception):
                previous.flush()
        last[0] = self
        return write(self, string)

    iostream.OutStream.write = ordered_write  # type: ignore[method-assign]  # patching ipykernel in the sandbox


def drain_fd_output() -> Any:
    """Replace ipykernel's fd watcher with one that reads only under a lock, so that a
    post-execute hook can forward whatever is still in the pipe before the cell ends."""
    import fcntl
    import select
    import struct
    import termios
    import threading

    from ipykernel import iostream

    if not hasattr(iostream.OutStream, "_watch_pipe_fd"):
        return None
    locks: dict[int, threading.Lock] = {}

    def lock_of(stream: Any) -> threading.Lock:
        return locks.setdefault(id(stream), threading.Lock())

    def pump(stream: Any) -> int:
        fid = stream._fid
        pending = int(struct.unpack("i", fcntl.ioctl(fid, termios.FIONREAD, b"\0\0\0\0"))[0])
        if pending:
            stream.write(os.read(fid, pending).decode(errors="replace"))
        return pending

    def watch(self: Any) -> None:
        if self._fid is None:
            return
        lock = lock_of(self)
        while self._should_watch:
            readable, _, _ = select.select([self._fid], [], [], 1.0)
            if readable:
                with lock:
                    if not pump(self):
                        return  # end of file

    def drain() -> None:
        for stream in (sys.stdout, sys.stderr):
            if getattr(stream, "_fid", None) is not None:
                with lock_of(stream):
                    while pump(stream):
                        pass

    iostream.OutStream._watch_pipe_fd = watch  # type: ignore[method-assign]  # patching ipykernel in the sandbox
    return drain


def install_lazy(shell: Any, names: dict[str, str]) -> None:
    """Bind each ``alias`` in the user's namespace to a stand-in for module ``name``: the first
    attribute access imports the real module, which then takes the stand-in's place. The names
    are hidden from ``%who`` like the pre-imports. ``import pandas as pd`` works as always."""
    import importlib
    import types

    namespace, hidden = shell.user_ns, shell.user_ns_hidden

    def stand_in(alias: str, name: str) -> types.ModuleType:
        def load() -> types.ModuleType:
            module = importlib.import_module(name)
            if namespace.get(alias) is proxy:
                namespace[alias] = hidden[alias] = module
            return module

        class LazyModule(types.ModuleType):
            def __getattr__(self, attr: str) -> Any:
                return getattr(load(), attr)

            def __dir__(self) -> list[str]:
                return dir(load())

            def __repr__(self) -> str:
                return repr(load())

        proxy = LazyModule(name)
        for attr in ("__doc__", "__package__", "__loader__", "__spec__"):
            proxy.__dict__.pop(attr, None)  # answered by the real module, once loaded
        return proxy

    proxies = {alias: stand_in(alias, name) for alias, name in names.items()}
    namespace.update(proxies)
    hidden.update(proxies)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sys.argv = [sys.argv[0]]
    set_limits(cfg)
    guard_output_size(cfg["max_text_chars"], cfg["max_image_chars"])
    keep_stream_order()
    drain = drain_fd_output()

    from ipykernel.kernelapp import IPKernelApp
    from traitlets.config import Config

    c = Config()
    c.IPKernelApp.exec_lines = cfg["exec_lines"]
    if cfg["matplotlib"]:
        c.IPKernelApp.matplotlib = cfg["matplotlib"]
    c.IPKernelApp.quiet = True
    c.InteractiveShell.xmode = "Plain"
    c.InteractiveShell.colors = "nocolor"
    c.HistoryManager.enabled = False
    c.InlineBackend.figure_formats = {"png"}
    app = IPKernelApp.instance(config=c)
    app.initialize(["-f", cfg["connection_file"]])  # type: ignore[no-untyped-call]  # ipykernel is untyped
    if drain is not None and app.shell is not None:
        app.shell.events.register("post_execute", drain)
    if cfg.get("lazy") and app.shell is not None:
        install_lazy(app.shell, cfg["lazy"])
    app.start()  # type: ignore[no-untyped-call]  # ipykernel is untyped


if __name__ == "__main__":
    main()
