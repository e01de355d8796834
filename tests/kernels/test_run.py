"""What a user gets from /run on real sandboxed kernels: outputs, sessions, limits."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from bot.kernels import (
    ErrorOutput,
    ImageOutput,
    KernelService,
    NoGpuBackend,
    ResultOutput,
    RunStatus,
    StreamOutput,
)
from tests.kernels.helpers import TEST_LIMITS, TIMEOUT_LIMITS, Runner

pytestmark = pytest.mark.asyncio(loop_scope="module")

PNG = b"\x89PNG\r\n\x1a\n"


async def test_outputs_arrive_in_order(shared: Runner) -> None:
    run = shared
    result = await run(
        "import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')\n40 + 2"
    )
    assert result.status is RunStatus.OK and not result.session_reset and not result.notices
    assert result.outputs == (
        StreamOutput("stdout", "one\n"),
        StreamOutput("stderr", "two\n"),
        StreamOutput("stdout", "three\n"),
        ResultOutput("42"),
    )
    assert result.duration_s > 0


async def test_dataframe_is_a_readable_table(shared: Runner) -> None:
    result = await shared("pd.DataFrame({'city': ['Accra', 'Kumasi'], 'people': [2.5, 3.4]})")
    assert result.outputs == (
        ResultOutput("     city  people\n0   Accra     2.5\n1  Kumasi     3.4"),
    )


async def test_traceback_is_trimmed_to_the_users_code_without_ansi(shared: Runner) -> None:
    result = await shared("def half(x):\n    return x / 0\n\nhalf(4)")
    assert result.status is RunStatus.ERROR and not result.session_reset
    (error,) = result.outputs
    assert isinstance(error, ErrorOutput)
    assert (error.ename, error.evalue) == ("ZeroDivisionError", "division by zero")
    assert re.fullmatch(
        r"Traceback \(most recent call last\):\n"
        r"  Cell In\[(\d+)\], line 4\n    half\(4\)\n"
        r"  Cell In\[\1\], line 2 in half\n    return x / 0\n"
        r"ZeroDivisionError: division by zero",
        error.traceback,
    ), error.traceback
    library = await shared("pd.read_csv('missing.csv')")
    assert "more frames in library code" in library.text
    assert "site-packages" not in library.text and "\x1b" not in library.text


async def test_plot_without_show_comes_back_as_png(shared: Runner) -> None:
    result = await shared("plt.plot([1, 3, 2])\nplt.title('growth');")
    assert result.status is RunStatus.OK
    (image,) = [o for o in result.outputs if isinstance(o, ImageOutput)]
    assert image.png.startswith(PNG) and len(image.png) > 1000
    assert result.images_dropped == 0


async def test_too_many_images_are_counted_not_sent(shared: Runner) -> None:
    code = "for i in range(6):\n    plt.figure(figsize=(1, 1)); plt.plot([i, 1])"
    result = await shared(code)
    assert result.status is RunStatus.OK
    assert len(result.images) == TEST_LIMITS.max_images == 4
    assert result.images_dropped == 2
    assert "2 more images left out (at most 4 per run)." in result.notices


async def test_state_persists_within_a_session(runner: Callable[..., Runner]) -> None:
    run = runner()
    await run.ok("total = 40\nwith open('notes.txt', 'w') as f: f.write('kept')")
    assert await run.ok("total += 2\nprint(total, open('notes.txt').read())") == "42 kept\n"


async def test_sessions_are_isolated(runner: Callable[..., Runner]) -> None:
    alice, bob = runner("alice"), runner("bob")
    await alice.ok("secret_var = 'alice-private'\nopen('mine.txt', 'w').write('alice-file')")
    result = await bob(
        "import os\n"
        "print('var' , 'secret_var' in globals())\n"
        "print('files', os.listdir('.'))\n"
        "print('procs', sorted(p for p in os.listdir('/proc') if p.isdigit()))"
    )
    assert "var False" in result.text and "mine.txt" not in result.text
    assert "alice" not in result.text
    assert "procs ['1', '2']" in result.text  # bwrap's PID 1 and bob's own kernel only


async def test_reset_gives_a_fresh_kernel(
    runner: Callable[..., Runner], module_service: KernelService
) -> None:
    run = runner()
    await run.ok("x = 1")
    assert await module_service.reset(run.session) is True
    assert await module_service.reset(run.session) is False
    result = await run("print(x)")
    assert result.status is RunStatus.ERROR and "NameError" in result.text
    assert not result.session_reset  # the user asked for it: no surprise notice


async def test_input_gets_a_clear_message(shared: Runner) -> None:
    result = await shared("name = input('Your name? ')")
    assert result.status is RunStatus.ERROR
    error = result.error
    assert error is not None and "no keyboard in a chat" in error.evalue
    assert any("No input in chat" in n for n in result.notices)


@pytest.mark.slow
async def test_infinite_loop_is_interrupted_and_state_kept(
    timeout_runner: Callable[..., Runner],
) -> None:
    run = timeout_runner()
    await run.ok("counter = 7")
    result = await run("while True:\n    counter += 0")
    assert result.status is RunStatus.TIMEOUT and not result.session_reset
    assert result.notices == (
        f"Stopped after {TIMEOUT_LIMITS.wall_s:g} s (time limit). Your variables are kept.",
    )
    assert "KeyboardInterrupt" not in result.text
    assert result.duration_s >= TIMEOUT_LIMITS.wall_s
    assert await run.ok("print(counter)") == "7\n"


@pytest.mark.slow
async def test_sleep_in_c_code_is_interrupted(timeout_runner: Callable[..., Runner]) -> None:
    run = timeout_runner()
    result = await run("import time\nprint('before')\ntime.sleep(100)")
    assert result.status is RunStatus.TIMEOUT and not result.session_reset
    assert result.outputs == (StreamOutput("stdout", "before\n"),)
    assert await run.ok("print('after')") == "after\n"


@pytest.mark.slow
async def test_uninterruptible_c_loop_is_killed_and_replaced(
    timeout_runner: Callable[..., Runner],
) -> None:
    run = timeout_runner()
    await run.ok("lost = True")
    # catastrophic regex backtracking never checks for signals
    result = await run("import re\nre.match(r'(a+)+$', 'a' * 40 + 'b')")
    assert result.status is RunStatus.TIMEOUT and result.session_reset
    assert "did not stop when interrupted, so your session was reset" in result.notices[0]
    after = await run("print('lost' in globals())")
    assert after.status is RunStatus.OK and after.text == "False\n"


@pytest.mark.slow
async def test_code_that_ignores_interrupts_is_killed(
    timeout_runner: Callable[..., Runner],
) -> None:
    run = timeout_runner()
    result = await run(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    )
    assert result.status is RunStatus.TIMEOUT and result.session_reset


async def test_nul_bytes_and_invalid_unicode(shared: Runner) -> None:
    run = shared
    nul_code = await run("print('a\x00b')")
    assert nul_code.status is RunStatus.ERROR and "null bytes" in nul_code.text
    surrogate = await run("print('x\ud800y')")
    assert surrogate.status is RunStatus.OK and surrogate.text == "x?y\n"
    raw = await run(
        "import os, sys\nos.write(1, b'A\\x00B\\xff\\xfeC\\n')\n"
        "print('D\\udcffE')\nprint('\\x1b[31mred\\x1b[0m')"
    )
    assert raw.status is RunStatus.OK
    assert "AB" in raw.text and "C" in raw.text and "red" in raw.text
    assert "\x1b" not in raw.text


async def test_chat_markup_comes_back_verbatim(shared: Runner) -> None:
    """Escaping is the adapter's job: the service must not alter or interpret text."""
    text = "@everyone <b>hi</b> **bold** [x](http://e.com) <@123> </code>"
    result = await shared(f"print({text!r})")
    assert result.outputs == (StreamOutput("stdout", text + "\n"),)


async def test_gpu_request_without_a_gpu_backend(shared: Runner) -> None:
    with pytest.raises(NoGpuBackend) as err:
        await shared("print(1)", gpu=True)
    assert "no GPU backend is configured" in err.value.user_message.replace("No", "no", 1)


async def test_info_describes_the_backend(module_service: KernelService) -> None:
    info = module_service.info()
    assert info.backend == "local-bwrap" and info.sandboxed and info.available
    assert info.gpu is None  # this machine has no /dev/nvidia*
    assert info.limits == TEST_LIMITS
    assert any(p.startswith("pandas ") for p in info.packages)
    assert info.fences[0].startswith("memory fence: ")
    assert any(line.startswith("syscall filter: seccomp") for line in info.fences)


async def test_user_inside_is_not_root_and_home_is_capped(shared: Runner) -> None:
    text = await shared.ok(
        "import os, shutil\nprint(os.getuid(), os.getcwd(), shutil.disk_usage('.').total // 2**20)"
    )
    assert text == f"1000 /home/user {TEST_LIMITS.tmp_mb}\n"
