"""The kernel backend interface.

A backend starts kernels, executes code on them (streaming outputs to a sink), interrupts,
restarts and shuts them down. It enforces nothing about chat, users or sessions; the service
does. The local bubblewrap backend (:mod:`bot.kernels.local`) implements it; remote backends
(Jupyter Kernel/Enterprise Gateway in :mod:`bot.kernels.gateway`, Kaggle GPU batch) implement
the same five operations.

``start(owner)`` receives an opaque id of the user the kernel is for (the service's user key),
or None for a spare the warm pool starts before anyone asks. A backend that bills or limits
kernels per user on the far side (a gateway's ``KERNEL_USERNAME``) sets ``owner_bound``, and the
pool then starts a kernel for its user when no spare is ready instead of an anonymous one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from bot.kernels.jupyter import ExecOutcome, ExecReply, OutputSink

__all__ = [
    "BackendState",
    "ExecOutcome",
    "ExecReply",
    "KernelBackend",
    "KernelHandle",
    "KernelUsage",
    "OutputSink",
]


@dataclass(frozen=True, slots=True)
class KernelUsage:
    """What a kernel currently uses, where the backend can tell."""

    tasks: int  # processes + threads: what RLIMIT_NPROC counts
    processes: int
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class BackendState:
    """What ``/run --info`` can say about a backend right now (None: the backend cannot tell)."""

    name: str
    reachable: bool
    kernels_in_use: int | None = None  # kernels this bot holds there (sessions + spares)
    max_kernels: int | None = None  # the cap the operator configured for this backend
    gpu: str | None = None
    detail: str | None = None  # short, user-safe reason when not reachable
    limits: tuple[str, ...] = field(default_factory=tuple)  # further limits, one phrase each


class KernelHandle(ABC):
    """One running kernel of a backend."""

    def __init__(self, kernel_id: str) -> None:
        self.id = kernel_id
        self.started_at = time.monotonic()
        # Started with optional pre-imports deferred (``preimports = "lazy"``): the pool may
        # complete it with :meth:`KernelBackend.top_up` while it is a spare.
        self.lean = False

    @property
    @abstractmethod
    def alive(self) -> bool: ...

    @property
    def exit_description(self) -> str | None:
        """How the kernel ended, e.g. "killed by SIGSEGV" (None while alive or unknown)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} alive={self.alive}>"


class KernelBackend(ABC):
    name: str = "backend"
    owner_bound: bool = False  # kernels carry their user's id on the far side (see module doc)

    @property
    @abstractmethod
    def sandboxed(self) -> bool: ...

    @property
    def gpu(self) -> str | None:
        """A short description of the GPU kernels can use, or None."""
        return None

    @abstractmethod
    async def check(self) -> None:
        """Verify the backend can run kernels; raise SandboxUnavailable (with the fix) if not."""

    @abstractmethod
    async def start(self, owner: str | None = None) -> KernelHandle:
        """Start a kernel and return once it answers (pre-imports done). ``owner``: an opaque
        id of the user it is for (None: a spare); backends that do not need it ignore it."""

    @abstractmethod
    async def execute(self, kernel: KernelHandle, code: str, sink: OutputSink) -> ExecReply:
        """Run ``code``; call ``sink`` for each output; return when the kernel is idle again,
        or when it died or its connection broke."""

    @abstractmethod
    async def interrupt(self, kernel: KernelHandle) -> None:
        """Ask the running code to stop (KeyboardInterrupt); does not wait."""

    @abstractmethod
    async def shutdown(self, kernel: KernelHandle) -> None:
        """Stop the kernel for good, killing it and everything it started."""

    async def top_up(self, kernel: KernelHandle) -> None:  # noqa: B027 (optional hook)
        """Complete a lean spare's deferred pre-imports (clears ``kernel.lean``). Called by the
        warm pool only, before the kernel is handed to anyone. Default: nothing to do."""

    async def restart(self, kernel: KernelHandle, owner: str | None = None) -> KernelHandle:
        """A fresh kernel in place of ``kernel`` (state lost). Default: shutdown + start."""
        await self.shutdown(kernel)
        return await self.start(owner)

    def usage(self, kernel: KernelHandle) -> KernelUsage | None:
        return None

    async def state(self) -> BackendState | None:
        """Reachability, kernels in use / cap and GPU for ``/run --info``; None: not known."""
        return None

    def unsandboxed(self) -> KernelBackend | None:
        """The same backend without its sandbox, for an explicit opt-in; None if impossible."""
        return None

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release what the backend holds (temporary directories, …)."""

    def fences(self) -> tuple[str, ...]:
        """What isolates kernels and bounds their resources, one line each (``/run --info``)."""
        return ()

    def kill_now(self) -> int:
        """Synchronously kill every kernel (a shutdown out of time); how many. Default: none."""
        return 0
