"""Platform-neutral data of the kernel service: what a run returns and the limits it runs under.

Everything here is a frozen dataclass so a handler can pass results around (and tests can compare
them) without worrying about shared mutable state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from bot.kernels.settings import KernelLimits as KernelLimits  # re-exported


@dataclass(frozen=True, slots=True)
class StreamOutput:
    """Text the code wrote to stdout or stderr (consecutive writes to one stream are merged)."""

    name: Literal["stdout", "stderr"]
    text: str


@dataclass(frozen=True, slots=True)
class ResultOutput:
    """The ``text/plain`` form of a value: the cell's last expression or a ``display()`` call.

    A pandas DataFrame arrives as pandas' own text table (rows and columns truncated by pandas).
    """

    text: str


@dataclass(frozen=True, slots=True)
class ImageOutput:
    """A PNG image, e.g. a matplotlib figure (shown without ``plt.show()``)."""

    png: bytes

    def __repr__(self) -> str:
        return f"ImageOutput(png=<{len(self.png)} bytes>)"


@dataclass(frozen=True, slots=True)
class ErrorOutput:
    """An exception. ``traceback`` is plain text (no ANSI) trimmed to the user's own code."""

    ename: str
    evalue: str
    traceback: str


Output = StreamOutput | ResultOutput | ImageOutput | ErrorOutput


class RunStatus(StrEnum):
    OK = "ok"
    ERROR = "error"  # the code raised; the session is kept
    TIMEOUT = "timeout"  # wall time limit; interrupted (kept) or killed (reset)
    OUTPUT_LIMIT = "output_limit"  # output cap or a flood; the kernel is recycled
    MEMORY_LIMIT = "memory_limit"  # MemoryError under the memory limit; the kernel is recycled
    PROCESS_LIMIT = "process_limit"  # fork or thread bomb; the kernel is recycled
    DISK_LIMIT = "disk_limit"  # filled its tmpfs (or hit the file size cap); recycled
    CRASHED = "crashed"  # the kernel died (segfault, abort, killed by the OS)
    CANCELLED = "cancelled"  # stopped by /reset or by the service shutting down


@dataclass(frozen=True, slots=True)
class RunResult:
    outputs: tuple[Output, ...]
    status: RunStatus
    session_reset: bool = False
    notices: tuple[str, ...] = ()
    duration_s: float = 0.0
    images_dropped: int = 0
    output_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.OK

    @property
    def text(self) -> str:
        """All text outputs joined in order (stdout, stderr, values, tracebacks)."""
        parts: list[str] = []
        for out in self.outputs:
            if isinstance(out, StreamOutput):
                parts.append(out.text)
            elif isinstance(out, ResultOutput):
                parts.append(out.text + "\n")
            elif isinstance(out, ErrorOutput):
                parts.append(out.traceback + "\n")
        return "".join(parts)

    @property
    def images(self) -> tuple[bytes, ...]:
        return tuple(o.png for o in self.outputs if isinstance(o, ImageOutput))

    @property
    def error(self) -> ErrorOutput | None:
        return next((o for o in self.outputs if isinstance(o, ErrorOutput)), None)


@dataclass(frozen=True, slots=True)
class KernelInfo:
    backend: str
    sandboxed: bool
    gpu: str | None
    limits: KernelLimits
    available: bool = True
    unavailable_reason: str | None = None
    python: str = ""
    packages: tuple[str, ...] = ()
    warm_kernels: int = 0
    sessions: int = 0
    running: int = 0
    queued: int = 0
    fences: tuple[str, ...] = ()  # which fences are active, one line each
    backends: tuple[str, ...] = ()  # every configured /run backend and its state, one line each
