"""Fast tests of the pure parts: text clean-up, tracebacks, limits, queueing, the bwrap command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.kernels import KernelLimits, KernelUsage, RateLimited, RunResult, RunStatus, fence
from bot.kernels import sandbox as sb
from bot.kernels.bootstrap import rlimits
from bot.kernels.collector import Collector
from bot.kernels.formatting import clean_text, collapse_carriage_returns, trim_traceback
from bot.kernels.jupyter import ExecOutcome, ExecReply, to_output
from bot.kernels.models import ErrorOutput, ImageOutput, ResultOutput, StreamOutput
from bot.kernels.scheduler import FairQueue, RateLimiter
from bot.kernels.verdict import verdict
from tests.kernels.helpers import until

# -- text -------------------------------------------------------------------------------------


def test_clean_text_strips_ansi_nul_and_lone_surrogates() -> None:
    raw = "\x1b[31mred\x1b[0m a\x00b \x1b]0;title\x07ok \ud800 tab\tnl\n"
    assert clean_text(raw) == "red ab ok ? tab\tnl\n"


@given(st.text())
def test_clean_text_always_gives_chat_safe_utf8(text: str) -> None:
    cleaned = clean_text(text)
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned and "\x1b" not in cleaned


def test_progress_bars_collapse_to_their_last_state() -> None:
    assert collapse_carriage_returns("10%\r50%\r100%\ndone\r\n") == "100%\ndone\n"


def test_traceback_keeps_user_frames_and_collapses_library_frames() -> None:
    lines = [
        "Traceback (most recent call last):\n",
        "  Cell In[6], line 2\n    pd.read_csv('nope.csv')\n",
        "  File /venv/pandas/io/parsers/readers.py:1026 in read_csv\n    return _read(x)\n",
        "  File /venv/pandas/io/common.py:873 in get_handle\n    handle = open(\n",
        "FileNotFoundError: [Errno 2] No such file or directory: 'nope.csv'\n",
    ]
    text = trim_traceback(lines, "FileNotFoundError", "...")
    assert text == (
        "Traceback (most recent call last):\n"
        "  Cell In[6], line 2\n    pd.read_csv('nope.csv')\n"
        "  ... 2 more frames in library code\n"
        "FileNotFoundError: [Errno 2] No such file or directory: 'nope.csv'"
    )


def test_traceback_without_frames_is_kept_whole() -> None:
    lines = ["  Cell In[8], line 1\n    x = (\n         ^\n", "SyntaxError: incomplete input\n"]
    assert trim_traceback(lines, "SyntaxError", "incomplete input").endswith(
        "SyntaxError: incomplete input"
    )
    assert trim_traceback([], "KeyError", "'a'") == "KeyError: 'a'"


def test_error_message_from_a_kernel_is_cleaned() -> None:
    out = to_output(
        "error",
        {
            "ename": "ValueError",
            "evalue": "\x1b[1mbad\x1b[0m",
            "traceback": ["\x1b[31mValueError\x1b[0m: bad"],
        },
    )
    assert out == ErrorOutput("ValueError", "bad", "ValueError: bad")


def test_malformed_kernel_messages_give_nothing_not_exceptions() -> None:
    assert to_output("stream", {"name": 5, "text": None}) is None
    assert to_output("display_data", {"data": "not a dict"}) is None
    assert to_output("execute_result", {"data": {"text/plain": ["a", "b", 3]}}) == ResultOutput(
        "ab"
    )
    assert to_output("comm_open", {}) is None
    bad = to_output("error", {"traceback": "not a list", "ename": None})
    assert isinstance(bad, ErrorOutput) and bad.ename == "Error"


# -- limits and results -----------------------------------------------------------------------


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="wall_s"):
        KernelLimits(wall_s=0)
    with pytest.raises(ValueError, match="max_sessions"):
        KernelLimits(max_running=4, max_sessions=2)
    assert KernelLimits().describe().startswith("10 s per run, 1024 MB memory")
    assert "1 MB output" in KernelLimits().describe()


def test_run_result_text_joins_outputs_in_order() -> None:
    result = RunResult(
        (StreamOutput("stdout", "a\n"), ResultOutput("2"), ImageOutput(b"png")),
        RunStatus.OK,
    )
    assert result.text == "a\n2\n" and result.images == (b"png",) and result.ok
    assert "3 bytes" in repr(result.outputs[2])


def test_collector_caps_text_merges_streams_and_counts_images() -> None:
    limits = KernelLimits(output_bytes=10, max_images=1, max_image_bytes=1000)
    col = Collector(limits)
    col(StreamOutput("stdout", "abc"), 3)
    col(StreamOutput("stdout", "def"), 3)
    col(ImageOutput(b"x" * 50), 50)
    col(ImageOutput(b"y" * 50), 50)
    col(ImageOutput(b"z" * 1500), 1500)
    assert not col.limit_hit.is_set()
    col(StreamOutput("stderr", "0123456789"), 10)
    assert col.limit_hit.is_set() and col.truncated
    col(StreamOutput("stdout", "ignored"), 7)
    outs = col.outputs()
    assert outs[0] == StreamOutput("stdout", "abcdef")
    assert outs[1] == ImageOutput(b"x" * 50)
    assert outs[2] == StreamOutput("stderr", "0123")
    assert col.images_dropped == 2 and col.large_images == 1


# -- queueing and rate limits ------------------------------------------------------------------


async def test_fair_queue_serves_in_order_and_reports_positions() -> None:
    queue = FairQueue(1)
    positions: dict[str, list[int]] = {"b": [], "c": []}
    order: list[str] = []
    await queue.acquire()

    async def waiter(name: str) -> None:
        async def on_queued(pos: int) -> None:
            positions[name].append(pos)

        async with queue.slot(on_queued):
            order.append(name)

    b = asyncio.create_task(waiter("b"))
    c = asyncio.create_task(waiter("c"))
    await until(lambda: queue.waiting == 2)
    queue.release()
    await asyncio.gather(b, c)
    assert order == ["b", "c"]
    assert positions["b"] == [1]
    assert positions["c"][0] == 2 and positions["c"][-1] == 1
    assert queue.holders == 0


async def test_fair_queue_cancelled_waiter_gives_up_its_place() -> None:
    queue = FairQueue(1)
    await queue.acquire()
    task = asyncio.create_task(queue.acquire())
    await until(lambda: queue.waiting == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queue.waiting == 0
    queue.release()
    assert queue.free


def test_rate_limiter_window() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.check("u")
    limiter.check("u")
    limiter.check("other")
    with pytest.raises(RateLimited) as err:
        limiter.check("u")
    assert 59 <= err.value.retry_after_s <= 60
    assert "2 runs per minute" in err.value.user_message
    now[0] += 60.5
    limiter.check("u")


# -- sandbox command line ----------------------------------------------------------------------


def _layout(tmp_path: Path, **kwargs: object) -> sb.SandboxLayout:
    defaults: dict[str, object] = {
        "bwrap": "bwrap",
        "python": sys.executable,
        "ro_binds": tuple((p, str(p)) for p in sb.python_roots()),
        "connection_file": tmp_path / "connection.json",
        "etc_dir": tmp_path / "etc",
        "empty_file": tmp_path / "empty",
        "empty_dir": tmp_path / "empty.d",
    }
    defaults.update(kwargs)
    return sb.SandboxLayout(**defaults)  # type: ignore[arg-type]


def test_bwrap_argv_isolates_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBHELP_TELEGRAM__TOKEN", "secret")
    argv = sb.bwrap_argv(_layout(tmp_path), KernelLimits(tmp_mb=64))
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] != "0"
    # the home tmpfs has a size cap, and / is read-only after every mount is in place
    home = argv.index(sb.HOME)
    assert argv[home - 3 : home] == ["--size", str(64 << 20), "--tmpfs"]
    assert argv[argv.index("--remount-ro", home) + 1] == "/"
    # nothing of the bot's home or project is bound, and nothing is writable from the host
    sources = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")]
    assert "/" not in sources and str(Path.home()) not in sources and "/work/main" not in sources
    assert "--bind" not in argv
    # the kernel's environment is ours alone, and cleared first
    setenv = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert argv.index("--clearenv") < argv.index("--setenv")
    assert setenv == sb.kernel_env(str(Path(sys.executable).parent))
    assert "secret" not in " ".join(argv)


def test_scrubbed_env_holds_nothing_of_the_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBHELP_TELEGRAM__TOKEN", "secret")
    assert sb.scrubbed_env() == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def test_protected_paths_inside_a_bind_are_masked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.csv").write_text("a,b\n")
    secret = data / "nbhelp.db"
    secret.write_text("secret")
    secret_dir = data / "private"
    secret_dir.mkdir()
    outside = tmp_path / "elsewhere.env"
    outside.write_text("x")
    layout = _layout(
        tmp_path,
        ro_binds=((data, str(data)),),
        protected=(secret, secret_dir, outside),
    )
    argv = sb.bwrap_argv(layout, KernelLimits())
    assert ["--ro-bind", str(tmp_path / "empty"), str(secret)] == argv[
        argv.index(str(secret)) - 2 : argv.index(str(secret)) + 1
    ]
    # a masked directory is an empty read-only tmpfs (its mount-table entry names no host path)
    masked = argv.index(str(secret_dir))
    assert argv[masked - 1] == "--tmpfs" and argv[masked + 1 : masked + 3] == [
        "--remount-ro",
        str(secret_dir),
    ]
    assert str(outside) not in argv  # not bound at all: nothing to mask
    assert sb.exposes(layout, data / "ok.csv")
    assert not sb.exposes(layout, secret) and not sb.exposes(layout, outside)


def test_python_roots_are_the_interpreter_dirs_only() -> None:
    roots = sb.python_roots()
    assert Path(sys.prefix).resolve() in roots or any(
        Path(sys.prefix).resolve().is_relative_to(r) for r in roots
    )
    assert Path("/") not in roots and Path.home() not in roots


def test_root_launcher_drops_to_an_unprivileged_uid() -> None:
    argv = fence.launcher_argv("/py", [*fence.setpriv_argv(900123, 900123), "bwrap"])
    assert argv[:5] == ["/py", "-I", "-S", "-c", fence.LAUNCHER]
    config = json.loads(argv[-1])
    assert config["argv"][:2] == ["setpriv", "--reuid=900123"]
    assert "--clear-groups" in config["argv"] and "--no-new-privs" in config["argv"]
    assert config["argv"][-1] == "bwrap" and config["cgroup"] is None


def test_gpu_detection_binds_device_nodes(tmp_path: Path) -> None:
    assert sb.detect_gpu(tmp_path) is None
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).write_text("")
    proc = tmp_path / "proc"
    info = proc / "driver" / "nvidia" / "gpus" / "0000:01:00.0"
    info.mkdir(parents=True)
    (info / "information").write_text("Model: \t NVIDIA H100 80GB HBM3\nIRQ: 1\n")
    gpu = sb.detect_gpu(tmp_path, proc)
    assert gpu is not None and gpu.name == "NVIDIA H100 80GB HBM3"
    argv = sb.bwrap_argv(_layout(tmp_path, gpu=gpu), KernelLimits())
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        dev = str(tmp_path / name)
        assert argv[argv.index(dev) - 1] == "--dev-bind"
    assert "/sys" not in argv  # never /sys whole (see test_fence_units for what is bound)
    # a GPU alone never trades RLIMIT_AS away: only a layout under a cgroup fence does
    config = json.loads(argv[-1])
    assert "RLIMIT_AS" in config["rlimits"] and "RLIMIT_DATA" not in config["rlimits"]
    relaxed = sb.bwrap_argv(_layout(tmp_path, gpu=gpu, address_space_limit=False), KernelLimits())
    config = json.loads(relaxed[-1])
    assert "RLIMIT_DATA" in config["rlimits"] and "RLIMIT_AS" not in config["rlimits"]
    assert sb.detect_gpu(tmp_path, tmp_path / "nothing").name == "NVIDIA GPU (1 device(s))"


def test_explain_failure_names_the_fix() -> None:
    msg = sb.explain_failure("bwrap: No permissions to creating new namespace, likely because...")
    assert "unprivileged_userns_clone" in msg and "apparmor_restrict_unprivileged_userns" in msg
    # the container options that let bubblewrap work, as compose.yaml and docs/deploy.md set them
    assert "security_opt: [seccomp=unconfined, apparmor=unconfined, systempaths=unconfined]" in msg
    assert "--security-opt systempaths=unconfined" in msg and "never `--privileged`" in msg
    proc = sb.explain_failure("bwrap: Can't mount proc on /newroot/proc: Operation not permitted")
    assert "systempaths=unconfined" in proc
    assert "self-test" in sb.explain_failure("python: exploded")


def test_rlimits_follow_the_limits() -> None:
    limits = KernelLimits(memory_mb=1024, max_processes=50, tmp_mb=10, max_open_files=99)
    values = rlimits(limits)
    assert values["RLIMIT_AS"] == 1024 << 20 and values["RLIMIT_NPROC"] == 50
    assert values["RLIMIT_FSIZE"] == 10 << 20 and values["RLIMIT_NOFILE"] == 99
    assert values["RLIMIT_CORE"] == 0
    assert os.cpu_count()


@given(st.lists(st.text()), st.text(), st.text())
def test_trim_traceback_never_fails_on_odd_input(lines: list[str], ename: str, evalue: str) -> None:
    text = trim_traceback(lines, ename or "Error", evalue)
    assert isinstance(text, str) and text


# -- verdicts ----------------------------------------------------------------------------------

LIMITS = KernelLimits()


def _verdict(**kwargs: object) -> tuple[RunStatus, str | None, list[str]]:
    base: dict[str, object] = {
        "cancel_reason": None,
        "reply": ExecReply(ExecOutcome.FINISHED, status="ok"),
        "killed": False,
        "timed_out": False,
        "over_limit": False,
        "error": None,
        "usage": KernelUsage(tasks=12, processes=2, rss_bytes=0),
        "exit_description": None,
    }
    base.update(kwargs)
    return verdict(LIMITS, **base)  # type: ignore[arg-type]


def test_verdicts() -> None:
    assert _verdict() == (RunStatus.OK, None, [])
    err = ErrorOutput("KeyError", "'a'", "KeyError: 'a'")
    assert _verdict(error=err) == (RunStatus.ERROR, None, [])
    status, reset, notices = _verdict(timed_out=True)
    assert status is RunStatus.TIMEOUT and reset is None and "variables are kept" in notices[0]
    status, reset, _ = _verdict(reply=None, killed=True, timed_out=True)
    assert status is RunStatus.TIMEOUT and reset and "did not stop" in reset
    many = KernelUsage(tasks=60, processes=30, rss_bytes=0)
    assert _verdict(reply=None, killed=True, usage=many)[0] is RunStatus.PROCESS_LIMIT
    died = ExecReply(ExecOutcome.DIED)
    status, reset, _ = _verdict(reply=died, exit_description="killed by SIGKILL")
    assert status is RunStatus.CRASHED and reset and "too much memory" in reset
    status, reset, _ = _verdict(reply=died, exit_description="killed by SIGXCPU")
    assert reset and "900 s of CPU time" in reset
    assert _verdict(reply=ExecReply(ExecOutcome.BROKEN))[0] is RunStatus.OUTPUT_LIMIT
    assert _verdict(over_limit=True)[0] is RunStatus.OUTPUT_LIMIT
    memory = ErrorOutput("_ArrayMemoryError", "Unable to allocate 6.7 GiB", "")
    assert _verdict(error=memory)[0] is RunStatus.MEMORY_LIMIT
    disk = ErrorOutput("OSError", "[Errno 28] No space left on device", "")
    assert _verdict(error=disk)[0] is RunStatus.DISK_LIMIT
    fork = ErrorOutput("BlockingIOError", "[Errno 11] Resource temporarily unavailable", "")
    assert _verdict(error=fork)[0] is RunStatus.PROCESS_LIMIT
    assert _verdict(cancel_reason="reset", reply=died)[0] is RunStatus.CANCELLED
