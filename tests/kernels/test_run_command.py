"""/run and /reset through the whole core: what a chat user is told, rendered for each chat
platform, with a real sandboxed kernel pool and the bot's token in its environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core.app import Core
from bot.core.models import Reply
from bot.core.render import ConsoleRenderer, DiscordRenderer, TelegramRenderer
from bot.settings import Settings
from bot.wiring import build_core
from tests.conftest import Chat

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "999999:TEST-token-must-never-leak"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run_core(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Core]:
    tmp = tmp_path_factory.mktemp("runcore")
    os.environ["NBHELP_TELEGRAM__TOKEN"] = SECRET
    try:
        settings = Settings(db=tmp / "bot.db", run={"pool_size": 1, "wall_s": 3.0}, _env_file=None)  # type: ignore[call-arg]
        core = build_core(settings)
        core.ctx.store.set_meta("secret", SECRET)
        yield core
        await core.aclose()
    finally:
        os.environ.pop("NBHELP_TELEGRAM__TOKEN", None)


def text_of(reply: Reply) -> str:
    return "\n".join(ConsoleRenderer().render(reply).messages)


async def run(core: Core, code: str, user: str = "u1", replied: str | None = None) -> Reply:
    reply = await Chat(core, user_id=user, chat_id="room").reply(
        f"/run {code}" if code else "/run", replied
    )
    return reply


async def test_sum_prints_45(run_core: Core) -> None:
    assert "45" in text_of(await run(run_core, "print(sum(range(10)))"))


async def test_fenced_block_and_reply_to_code(run_core: Core) -> None:
    fenced = "```python\nx = 6\nprint(x * 7)\n```"
    assert "42" in text_of(await run(run_core, fenced, user="fence"))
    replied = "look at this:\n```py\nprint('from the replied message')\n```"
    assert "from the replied message" in text_of(
        await run(run_core, "", user="fence", replied=replied)
    )


async def test_no_code_and_bad_option(run_core: Core) -> None:
    assert "Send code after /run" in text_of(await run(run_core, ""))
    assert "Unknown option --fast" in text_of(await run(run_core, "--fast print(1)"))


async def test_plot_comes_back_as_png(run_core: Core) -> None:
    reply = await run(run_core, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])", user="plot")
    assert len(reply.images) == 1 and reply.images[0].png.startswith(b"\x89PNG")
    for renderer in (TelegramRenderer(), DiscordRenderer()):
        assert renderer.render(reply).images == reply.images


async def test_state_persists_per_user_and_reset_clears_it(run_core: Core) -> None:
    await run(run_core, "secret_number = 1234", user="alice")
    assert "1234" in text_of(await run(run_core, "print(secret_number)", user="alice"))
    other = text_of(await run(run_core, "print(secret_number)", user="bob"))
    assert "1234" not in other and "NameError" in other
    assert "reset" in text_of(await Chat(run_core, user_id="alice", chat_id="room").reply("/reset"))
    assert "NameError" in text_of(await run(run_core, "print(secret_number)", user="alice"))
    assert "no kernel session" in text_of(
        await Chat(run_core, user_id="nobody", chat_id="room").reply("/reset")
    )


async def test_traceback_is_short_and_ansi_free(run_core: Core) -> None:
    text = text_of(await run(run_core, "def f():\n    return 1/0\nf()", user="tb"))
    assert "ZeroDivisionError" in text and "\x1b" not in text
    assert "site-packages" not in text


async def test_long_output_inline_head_and_full_file(run_core: Core) -> None:
    reply = await run(run_core, "for i in range(500): print('line', i)", user="long")
    text = text_of(reply)
    assert "line 0" in text and "line 499" not in text and "output.txt" in text
    full = next(f for f in reply.files if f.filename == "output.txt").data.decode()
    assert "line 499" in full and full.count("\n") == 500


async def test_input_gets_a_clear_message(run_core: Core) -> None:
    assert "no input" in text_of(await run(run_core, "input('name? ')", user="inp")).lower()


async def test_output_cannot_ping_or_break_formatting(run_core: Core) -> None:
    code = "print('@everyone <b>x</b> </pre> ``` **bold** <@&123>')"
    reply = await run(run_core, code, user="ping")
    for message in DiscordRenderer().render(reply).messages:
        assert "@everyone" not in message and "<@&123>" not in message
        assert message.count("```") % 2 == 0
    for message in TelegramRenderer().render(reply).messages:
        assert "<b>x</b>" not in message
        outside_pre = message.split("<pre>")[0] + message.split("</pre>")[-1]
        assert "@everyone" not in outside_pre  # inside <pre> Telegram makes no mention
        assert message.count("<pre>") == message.count("</pre>") == 1


async def test_secrets_never_come_back(run_core: Core, tmp_path: Path) -> None:
    db = run_core.ctx.settings.db
    code = (
        "import os\n"
        "print(dict(os.environ))\n"
        "for p in ['/proc/1/environ', '/proc/self/environ', " + repr(str(db)) + "]:\n"
        "    try: print(open(p, 'rb').read()[:200])\n"
        "    except Exception as e: print(type(e).__name__)\n"
    )
    text = text_of(await run(run_core, code, user="thief"))
    assert SECRET not in text and "TEST-token" not in text


async def test_timeout_is_explained_and_session_survives(run_core: Core) -> None:
    await run(run_core, "kept = 'still here'", user="loop")
    text = text_of(await run(run_core, "while True: pass", user="loop"))
    assert "time limit" in text.lower() or "stopped" in text.lower()
    assert "still here" in text_of(await run(run_core, "print(kept)", user="loop"))


async def test_gpu_and_info(run_core: Core) -> None:
    assert "No GPU backend is configured" in text_of(await run(run_core, "--gpu print(1)"))
    info = text_of(await run(run_core, "--info"))
    assert "sandboxed" in info and "GPU" in info and "10 s per run" not in info  # our 3 s limit
    assert "3 s per run" in info
    # Which fences are active on this host (hybrid cgroups, no delegated v2 subtree, root).
    assert (
        "Fence: memory fence: per-process limits — run under systemd with Delegate=yes for " in info
    )
    assert "Fence: syscall filter: seccomp" in info
