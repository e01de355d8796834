"""What happened in a run: its status, whether the kernel must be recycled, and what to say."""

from __future__ import annotations

from bot.kernels.backend import ExecOutcome, ExecReply, KernelUsage
from bot.kernels.collector import Collector
from bot.kernels.jupyter import FLOOD
from bot.kernels.models import ErrorOutput, KernelLimits, RunStatus


def verdict(
    limits: KernelLimits,
    *,
    cancel_reason: str | None,
    reply: ExecReply | None,
    killed: bool,
    timed_out: bool,
    over_limit: bool,
    error: ErrorOutput | None,
    usage: KernelUsage | None,
    exit_description: str | None,
) -> tuple[RunStatus, str | None, list[str]]:
    """(status, the reset notice if the kernel must be recycled, other notices)."""
    wall = f"{limits.wall_s:g} s"
    if cancel_reason is not None:
        why = "your session was reset" if cancel_reason == "reset" else "the runner shut down"
        return RunStatus.CANCELLED, f"Stopped: {why}.", []
    if (exit_description or "").startswith(FLOOD):
        why = (exit_description or "").split(f"{FLOOD}: ", 1)[-1]
        return (
            RunStatus.OUTPUT_LIMIT,
            f"Your session was stopped: {why} (a flood). It was reset.",
            [],
        )
    if reply is not None and reply.outcome is ExecOutcome.GONE:
        return (
            RunStatus.CRASHED,
            "Your session ended on the server before your code ran; variables are gone. "
            "Please send it again.",
            [],
        )
    if reply is not None and reply.outcome is ExecOutcome.LOST:
        how = exit_description or "the connection to the kernel server was lost"
        return (
            RunStatus.CRASHED,
            f"Interrupted: {how}. Output that arrived is shown; your session was reset.",
            [],
        )
    if reply is not None and reply.outcome is ExecOutcome.DIED:
        how = exit_description or "it stopped"
        if "SIGKILL" in how:
            text = "the kernel was killed, most likely for using too much memory"
        elif "SIGXCPU" in how:
            text = f"it used up its {limits.cpu_lifetime_s} s of CPU time"
        else:
            text = f"the kernel crashed ({how})"
        return RunStatus.CRASHED, f"Your session was reset: {text}.", []
    if over_limit or (reply is not None and reply.outcome is ExecOutcome.BROKEN):
        size = _size(limits.output_bytes)
        return (
            RunStatus.OUTPUT_LIMIT,
            f"Output passed the {size} limit, so it was cut and your session was reset.",
            [],
        )
    threshold = max(8, limits.max_processes * 3 // 4)
    if (usage is not None and usage.tasks >= threshold) or _is_process_error(error):
        return (
            RunStatus.PROCESS_LIMIT,
            "Your session was reset: it started too many processes or threads "
            f"(limit {limits.max_processes}).",
            [],
        )
    if killed:
        return (
            RunStatus.TIMEOUT,
            f"Stopped after {wall} (time limit). It did not stop when interrupted, "
            "so your session was reset.",
            [],
        )
    if error is not None and error.ename.endswith("MemoryError"):
        return (
            RunStatus.MEMORY_LIMIT,
            f"Your session was reset: it ran out of memory (limit {limits.memory_mb} MB).",
            [],
        )
    if _is_disk_error(error):
        return (
            RunStatus.DISK_LIMIT,
            f"Your session was reset: it filled its {limits.tmp_mb} MB of file space.",
            [],
        )
    if timed_out:
        return (
            RunStatus.TIMEOUT,
            None,
            [f"Stopped after {wall} (time limit). Your variables are kept."],
        )
    if error is not None or (reply is not None and reply.status == "error"):
        if error is not None and error.ename == "StdinNotImplementedError":
            return (
                RunStatus.ERROR,
                None,
                ["No input in chat: input() cannot ask you anything here."],
            )
        return RunStatus.ERROR, None, []
    return RunStatus.OK, None, []


def _is_process_error(error: ErrorOutput | None) -> bool:
    if error is None:
        return False
    text = f"{error.ename}: {error.evalue}"
    return "can't start new thread" in text or (
        error.ename in ("BlockingIOError", "OSError") and "Resource temporarily unavailable" in text
    )


def _is_disk_error(error: ErrorOutput | None) -> bool:
    if error is None:
        return False
    text = error.evalue
    return "No space left on device" in text or "File too large" in text


def image_notices(collector: Collector, limits: KernelLimits) -> list[str]:
    notices = []
    if collector.large_images:
        n = collector.large_images
        notices.append(
            f"{n} image{'s' if n > 1 else ''} over {_size(limits.max_image_bytes)} left out."
        )
    extra = collector.images_dropped - collector.large_images
    if extra:
        notices.append(
            f"{extra} more image{'s' if extra > 1 else ''} left out "
            f"(at most {limits.max_images} per run)."
        )
    return notices


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    return f"{n / 1000:g} kB"
