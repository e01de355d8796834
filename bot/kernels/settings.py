"""Limits and operator settings of the /run kernel pool: one pydantic model, checked at start.

Light on purpose (pydantic only): the root settings import it at every start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bot.kernels.fence_settings import FenceSettings

MAX_POOL = 256
MAX_SESSIONS = 4096


def _count_or_auto(low: int, high: int) -> Callable[[object], object]:
    """A validator: ``auto`` or a whole number from ``low`` to ``high``, with one clear message
    otherwise (instead of one per member of the union)."""

    def check(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        if number is None or not low <= number <= high:
            raise ValueError(f"must be auto or a whole number from {low} to {high}")
        return number

    return check


# ``auto`` (sized for the machine by bot/kernels/sizing.py) or a number of kernels.
CountOrAuto = Annotated[int | Literal["auto"], BeforeValidator(_count_or_auto(0, MAX_POOL))]
SessionsOrAuto = Annotated[int | Literal["auto"], BeforeValidator(_count_or_auto(1, MAX_SESSIONS))]


def _default_parallelism() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


class KernelLimits(BaseModel):
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
    - ``pool_size`` ``auto``: warm spare kernels, two per CPU while a quarter of the available
      memory holds them (``bot/kernels/sizing.py``); ``pool_surge`` ``auto``: one more per CPU
      started ahead of demand while a burst of new sessions lasts. A spare costs ~0.35 s of CPU
      to start lean (numpy only, RSS ~58 MB) and ~0.5 s more to complete (RSS ~120 MB).
    - ``preimports`` ``lazy``: pandas and matplotlib are imported on first use or while the
      spare waits on an idle machine; ``eager``: before the kernel is offered.
    - ``max_running`` runs execute at once (default one per core, at most 4); further runs queue.
    - ``max_sessions`` ``auto`` live sessions (kernels): half the available memory at ~128 MB
      per idle session, at least 8 (8 x ~120 MB idle RSS, plus the spares, fits 2 GB); the least
      recently used idle session is closed to make room for a new one.
    - ``runs_per_minute`` 15 per user (one running job per user in any case).
    - ``cpu_lifetime_s`` 900: RLIMIT_CPU of a kernel over its whole life, a fence against
      background threads that spin after their run returned.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_s: float = Field(10.0, gt=0, le=3600, description="wall time per run before interrupt")
    interrupt_grace_s: float = Field(
        2.0, gt=0, le=120, description="time to go idle after an interrupt before a kill"
    )
    memory_mb: int = Field(1024, ge=256, le=1_048_576, description="memory of one kernel")
    max_processes: int = Field(64, ge=8, le=4096, description="processes and threads of a kernel")
    max_open_files: int = Field(256, ge=32, le=65536, description="open files of a kernel")
    tmp_mb: int = Field(64, ge=1, le=65536, description="size of a kernel's writable home")
    output_bytes: int = Field(1_000_000, ge=1, le=100_000_000, description="text captured per run")
    max_images: int = Field(4, ge=0, le=20, description="images per run")
    max_image_bytes: int = Field(2_000_000, ge=1, le=50_000_000, description="bytes of one image")
    idle_timeout_s: float = Field(
        600.0, gt=0, le=7 * 86400, description="a session ends after this idle time"
    )
    max_age_s: float = Field(
        3600.0, gt=0, le=7 * 86400, description="a session ends after this age"
    )
    pool_size: CountOrAuto = Field(
        "auto",
        description="warm spare kernels; auto: two per CPU while a quarter of the available "
        "memory holds them (~128 MB each), at least one, at most 32",
    )
    pool_surge: CountOrAuto = Field(
        "auto",
        description="more spares started at once, ahead of demand, while a burst of new "
        "sessions lasts; auto: one per CPU within the same memory budget",
    )
    max_running: int = Field(
        default_factory=_default_parallelism,
        ge=1,
        le=256,
        description="runs executing at once (default: one per core, at most 4)",
    )
    max_sessions: SessionsOrAuto = Field(
        "auto",
        description="live kernel sessions at once; auto: as many as half the available memory "
        "holds at ~128 MB each, at least 8 (and max_running), at most 1024",
    )
    max_sessions_per_person: int = Field(
        1,
        ge=1,
        le=64,
        description="live sessions one person may hold across the chats of a platform; "
        "a new one closes their oldest",
    )
    runs_per_minute: int = Field(15, ge=1, le=100_000, description="runs per user per minute")
    cpu_lifetime_s: int = Field(
        900, ge=1, le=86400, description="CPU seconds a kernel may use over its life"
    )
    start_timeout_s: float = Field(
        30.0, gt=0, le=600, description="a kernel that takes longer to start has failed"
    )
    preimports: Literal["eager", "lazy"] = Field(
        "lazy",
        description="lazy: a kernel starts with numpy imported and imports pandas and "
        "matplotlib on first use (or while it waits as a spare on an idle machine): a new "
        "kernel costs well under half the CPU; eager: all three before it is offered",
    )

    @model_validator(mode="after")
    def _sessions_cover_running(self) -> KernelLimits:
        if self.max_sessions != "auto" and self.max_sessions < self.max_running:
            raise ValueError(
                f"max_sessions ({self.max_sessions}) must be at least max_running "
                f"({self.max_running})"
            )
        return self

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


class RunSettings(KernelLimits):
    """``[run]``: the kernel limits plus how the pool is offered."""

    fence: FenceSettings = Field(
        default_factory=FenceSettings,
        description="the resource fence around each sandbox (docs/sandbox.md)",
    )
    enabled: bool = Field(True, description="offer /run at all")
    backend: str = Field(
        "local",
        pattern=r"^(local|gateway:[a-z0-9][a-z0-9_-]{0,39})$",
        description="where plain /run runs: local (this host's sandbox) or gateway:<name> "
        "(a [gateways.<name>] section)",
    )
    gpu_route: tuple[str, ...] | None = Field(
        None,
        description="where /run --gpu tries, in order: gateway:<name>, kaggle, local; default: "
        "every GPU gateway, then Kaggle, then this host if it has a GPU",
    )
    run_dir: Path | None = Field(
        None, description="where kernels' private directories live (default: the temp dir)"
    )
    unsandboxed_i_trust_every_user: bool = Field(
        False,
        description="DANGER: run code WITHOUT bubblewrap when the sandbox is unavailable; "
        "only for a trusted single-user machine",
    )

    def limits(self) -> KernelLimits:
        """Just the limits (what the kernel service and backends take)."""
        return KernelLimits(**{k: getattr(self, k) for k in KernelLimits.model_fields})
