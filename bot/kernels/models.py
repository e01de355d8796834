"""Platform-neutral data of the kernel service: what a run returns and the limits it runs under.

Everything here is a frozen dataclass so a handler can pass results around (and tests can compare
them) without worrying about shared mutable state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


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


def _default_parallelism() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True, slots=True)
class KernelLimits:
    """Limits of the kernel service. Defaults are sized for a 2-core machine with a few GB of RAM.

    - ``wall_s`` 10 s per run, then a message-mode interrupt; ``interrupt_grace_s`` 2 s for the
      kernel to go idle before it is killed and replaced (the session is reset).
    - ``memory_mb`` 1024: RLIMIT_AS of each kernel. A warm kernel with numpy, pandas and matplotlib
      maps ~330 MB of address space (RSS ~110 MB); below ~1 GB ipykernel/matplotlib fail to start.
    - ``max_processes`` 64: RLIMIT_NPROC, which counts *threads*, per kernel (each kernel gets its
      own host uid when the bot runs as root). An idle kernel uses ~10 threads.
    - ``max_open_files`` 256: RLIMIT_NOFILE.
    - ``tmp_mb`` 64: the tmpfs that is the kernel's home, cwd and /tmp (RAM backed, so small);
      also the largest single file (RLIMIT_FSIZE). /dev/shm gets a quarter of it on top.
    - ``output_bytes`` 1 MB of text per run (snekbox's cap); past it capture stops and the
      kernel is interrupted and recycled. ``max_images`` 4 of at most ``max_image_bytes`` 2 MB
      each per run (chat platforms allow ~10 MB per file; a matplotlib figure is ~20-60 kB).
    - ``idle_timeout_s`` 600 and ``max_age_s`` 3600: a session ends 10 min after its last run or
      1 h after it started.
    - ``pool_size`` 2 warm spare kernels (each costs ~1 s of CPU to start and ~110 MB of RAM).
    - ``max_running`` 2 runs execute at once (one per core); further runs queue.
    - ``max_sessions`` 8 live sessions (kernels); the least recently used idle session is closed
      to make room for a new one. 8 x ~110 MB idle RSS, plus the spares, fits 2 GB.
    - ``runs_per_minute`` 15 per user (one running job per user in any case).
    - ``cpu_lifetime_s`` 900: RLIMIT_CPU of a kernel over its whole life, a fence against
      background threads that spin after their run returned.
    """

    wall_s: float = 10.0
    interrupt_grace_s: float = 2.0
    memory_mb: int = 1024
    max_processes: int = 64
    max_open_files: int = 256
    tmp_mb: int = 64
    output_bytes: int = 1_000_000
    max_images: int = 4
    max_image_bytes: int = 2_000_000
    idle_timeout_s: float = 600.0
    max_age_s: float = 3600.0
    pool_size: int = 2
    max_running: int = field(default_factory=_default_parallelism)
    max_sessions: int = 8
    runs_per_minute: int = 15
    cpu_lifetime_s: int = 900
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        positive = {
            "wall_s": self.wall_s,
            "interrupt_grace_s": self.interrupt_grace_s,
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "max_open_files": self.max_open_files,
            "tmp_mb": self.tmp_mb,
            "output_bytes": self.output_bytes,
            "max_image_bytes": self.max_image_bytes,
            "idle_timeout_s": self.idle_timeout_s,
            "max_age_s": self.max_age_s,
            "max_running": self.max_running,
            "max_sessions": self.max_sessions,
            "runs_per_minute": self.runs_per_minute,
            "cpu_lifetime_s": self.cpu_lifetime_s,
            "start_timeout_s": self.start_timeout_s,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"KernelLimits.{name} must be > 0, got {value!r}")
        if self.pool_size < 0 or self.max_images < 0:
            raise ValueError("KernelLimits.pool_size and max_images must be >= 0")
        if self.max_sessions < self.max_running:
            raise ValueError("KernelLimits.max_sessions must be >= max_running")

    def describe(self) -> str:
        """One short line for ``/run --info``."""
        output = (
            f"{self.output_bytes / 1e6:g} MB"
            if self.output_bytes >= 1_000_000
            else f"{self.output_bytes / 1e3:g} kB"
        )
        return (
            f"{self.wall_s:g} s per run, {self.memory_mb} MB memory, "
            f"{self.max_processes} processes/threads, {self.tmp_mb} MB files, "
            f"{output} output, {self.max_images} images; "
            f"sessions end after {self.idle_timeout_s / 60:g} min idle"
        )


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
