"""Operator settings of the resource fence around each sandboxed kernel (light: pydantic only).

Part of the root settings as ``[run.fence]`` in TOML, ``NBHELP_RUN__FENCE__<KEY>`` in the
environment. What each setting enforces, and with
what, is described in ``docs/sandbox.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FenceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seccomp: bool = Field(
        default=True,
        description="Apply the syscall filter (bot/kernels/seccomp_policy.py) to every sandbox. "
        "Turn off only to diagnose a kernel that fails to start.",
    )
    cgroup: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: put each sandbox in its own cgroup v2 when the bot's own cgroup is "
        "a delegated subtree (systemd Delegate=yes, a container with its own cgroup namespace); "
        "off: per-process limits only.",
    )
    allow_background: bool = Field(
        default=False,
        description="Keep processes a run started after the run ends. Off: they are killed "
        "after each run, and only the kernel itself survives.",
    )
    max_files: int = Field(
        default=4096,
        ge=64,
        le=1_000_000,
        description="Files and directories (inodes) in a sandbox's file space (home, /tmp, "
        "/dev/shm). Enforced by a tmpfs nr_inodes cap when the bot runs as root.",
    )
    max_ptys: int = Field(
        default=4,
        ge=0,
        le=64,
        description="Pseudo-terminals a sandbox may open, from its own devpts instance (bot as "
        "root only; otherwise, and with 0, a sandbox has none).",
    )
    cpus_per_kernel: float = Field(
        default=1.0, gt=0, le=1024, description="cgroup cpu.max of one sandbox, in CPUs."
    )
    total_memory_mb: int | None = Field(
        default=None,
        ge=256,
        le=16_777_216,
        description="cgroup memory.max of all kernels together. Default: the memory limit of "
        "one kernel times (sessions + the pool's spares, burst surge included, + 1).",
    )
    total_cpus: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="cgroup cpu.max of all kernels together. Default: none.",
    )
    gpu_without_cgroup: bool = Field(
        default=False,
        description="Offer the GPU to kernels even without a cgroup memory fence. CUDA cannot "
        "run under RLIMIT_AS, so such kernels get RLIMIT_DATA, which shared memory escapes.",
    )
