"""Start and stop in the caller's loop, webhook mode, 409 Conflict, and ``python -m bot``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot import logs
from bot.adapters.telegram import TelegramAdapter
from bot.core.app import Core
from bot.core.contract import AdapterRefused, ChatAdapter
from bot.settings import Settings, TelegramSettings
from bot.web.health import adapter_check
from tests.fakes.telegram_api import FakeBot, FakeTelegram
from tests.helpers import process_env
from tests.telegram.conftest import Launch, free_port
from tests.telegram.handlers import GATE

pytestmark = pytest.mark.asyncio(loop_scope="module")


def adapter_tasks() -> list[asyncio.Task[object]]:
    """Unfinished tasks running the adapter's or python-telegram-bot's code."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        where = (code.co_filename if code else "").replace("\\", "/")
        if "/telegram/" in where and "/tests/" not in where:
            out.append(task)
    return out


async def test_webhook_mode_checks_the_secret(launch: Launch) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"
    adapter, bot = await launch(
        settings_update={
            "webhook_url": url,
            "webhook_secret": SecretStr("s3cret-Token_1"),
        }
    )
    assert bot.webhook is not None
    assert bot.webhook["url"] == url and bot.webhook["secret_token"] == "s3cret-Token_1"
    assert bot.webhook["allowed_updates"] == ["message", "edited_message"]
    assert await bot.deliver_webhook({"message": bot.message("/help", chat_id=31)}) == 200
    calls = await bot.wait_sent(1, 31)
    assert "/status" in calls[0].result["text"]
    for secret in (None, "wrong"):
        status = await bot.deliver_webhook(
            {"message": bot.message("/status azure", chat_id=32)}, secret=secret
        )
        assert status == 403
    assert await bot.deliver_webhook({"message": bot.message("/help", chat_id=33)}) == 200
    await bot.wait_sent(1, 33)
    assert not bot.sent(32)  # the rejected updates never reached the bot
    assert not bot.calls_of("getUpdates", ok=None)  # no polling in webhook mode
    assert adapter.connected  # Telegram knows where to post
    await adapter.stop()
    assert not adapter.connected
    # Stopped: posts are refused with 503 (Telegram keeps them and retries) until the web
    # server itself stops.
    update = {"message": bot.message("/help", chat_id=35)}
    assert await bot.deliver_webhook(update) == 503


async def test_webhook_without_configured_secret_still_checks_one(launch: Launch) -> None:
    port = free_port()
    adapter, bot = await launch(
        settings_update={
            "webhook_url": f"http://127.0.0.1:{port}/",
        }
    )
    assert bot.webhook is not None
    secret = bot.webhook["secret_token"]
    assert secret == adapter.webhook_secret and len(secret) >= 32
    update = {"message": bot.message("/help", chat_id=34)}
    assert await bot.deliver_webhook(update, secret=None) == 403
    assert await bot.deliver_webhook({"message": bot.message("/help", chat_id=34)}) == 200
    assert len(await bot.wait_sent(1, 34)) == 1


async def test_conflict_is_logged_and_polling_recovers(
    launch: Launch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="nbhelp.telegram")
    # the first getUpdates answers 409, as when another instance polls with the token
    adapter, bot = await launch(prepare=lambda b: b.fail("getUpdates", code=409))
    await bot.wait_calls("getUpdates", 1, ok=False)
    bot.send("/help", chat_id=35)
    await bot.wait_sent(1, 35)  # after the backoff, polling goes on
    assert adapter.conflicts == 1
    logged = [r.getMessage() for r in caplog.records if "409 Conflict" in r.getMessage()]
    assert len(logged) == 1 and "another process is polling" in logged[0]
    polls = bot.calls_of("getUpdates", ok=None)
    assert polls[0].status == 409 and polls[1].ok
    assert polls[1].at - polls[0].at >= 0.9  # backed off, not a tight loop


async def test_a_second_poller_gets_409_not_a_crash(launch: Launch, fake: FakeTelegram) -> None:
    adapter, bot = await launch()
    await bot.wait_calls("getUpdates", 1)
    async with (
        aiohttp.ClientSession() as session,  # another instance with the same token
        session.post(f"{fake.base_url}{bot.token}/getUpdates", json={"timeout": 0}) as resp,
    ):
        assert resp.status == 200  # the newer poll wins; the adapter's waiting poll gets 409

    def recovered(b: FakeBot) -> bool:
        polls = b.calls_of("getUpdates", ok=None)
        first_409 = next((i for i, c in enumerate(polls) if c.status == 409), None)
        return first_409 is not None and len(polls) > first_409 + 1

    await bot.wait_for(recovered)
    assert adapter.conflicts >= 1
    bot.send("/help", chat_id=36)
    assert len(await bot.wait_sent(1, 36)) == 1
    assert adapter.app.updater is not None and adapter.app.updater.running


async def test_stop_cancels_a_stuck_handler_quickly(launch: Launch, test_core: Core) -> None:
    GATE.reset()
    adapter, bot = await launch(stop_grace_s=0.3)
    bot.send("/slow", chat_id=37)
    await asyncio.wait_for(GATE.started.wait(), 60)
    started = time.monotonic()
    await adapter.stop()
    # The grace period is 0.5 s here and the job waits forever: stop() cancels it instead of
    # waiting for it (a generous bound: a loaded machine is slow, the job would never end).
    assert time.monotonic() - started < 20
    assert GATE.cancelled and not GATE.finished
    assert not adapter.app.running and not adapter_tasks()
    await adapter.stop()  # idempotent


async def test_stop_finishes_in_flight_work_within_the_grace(
    launch: Launch, test_core: Core
) -> None:
    GATE.reset()
    adapter, bot = await launch(stop_grace_s=5)
    bot.send("/slow", chat_id=38)
    await asyncio.wait_for(GATE.started.wait(), 60)
    stopping = asyncio.create_task(adapter.stop())
    await asyncio.sleep(0)
    GATE.release.set()
    await asyncio.wait_for(stopping, 60)
    assert GATE.finished and not GATE.cancelled
    assert "slow done" in bot.sent(38)[0].result["text"]  # the answer went out before the end
    assert not adapter_tasks()


class _Seen(logging.Handler):
    """Sets an event when a log record containing ``needle`` is emitted."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle, self.event = needle, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()


async def test_stop_is_quick_while_polling_backs_off(launch: Launch) -> None:
    # a 429 on getUpdates makes the library's poll loop sleep retry_after + 0.5 s
    seen = _Seen("Retrying")
    loop_log = logging.getLogger("telegram.ext")  # the library's network loop logs here
    old_level = loop_log.level
    loop_log.setLevel(logging.DEBUG)
    loop_log.addHandler(seen)
    try:
        adapter, _ = await launch(
            prepare=lambda b: b.fail("getUpdates", code=429, retry_after=30), updater_stop_s=0.5
        )
        await asyncio.wait_for(seen.event.wait(), 60)  # the loop is now in its 30.5 s sleep
    finally:
        loop_log.removeHandler(seen)
        loop_log.setLevel(old_level)
    started = time.monotonic()
    await adapter.stop()
    assert time.monotonic() - started < 20  # not the 30.5 s back-off (generous: a loaded machine)
    assert not adapter.app.running and not adapter_tasks()


async def test_python_m_bot_answers_and_exits_on_sigterm(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    """The "done when" check: the real entry point against the fake, then SIGTERM."""
    bot = fake.new_bot("nbhelp_cli_bot")
    env = process_env(
        tmp_path, NBHELP_TELEGRAM__TOKEN=bot.token, NBHELP_TELEGRAM__BASE_URL=fake.base_url
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await bot.wait_calls("getUpdates", 1, within=30)
        bot.send("/help", chat_id=41)
        bot.send("/status azure", chat_id=42)
        help_ = (await bot.wait_sent(1, 41))[0]
        status = (await bot.wait_sent(1, 42))[0]
        assert "/alternatives" in help_.result["text"]
        assert "2021-01-15" in status.result["text"]
        assert [c["command"] for c in bot.commands][:2] == ["help", "status"]
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert bot.token not in err.decode()  # the log redacts the token
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_meets_the_adapter_contract(launch: Launch, core: Core, settings: Settings) -> None:
    adapter, bot = await launch()
    assert isinstance(adapter, ChatAdapter) and adapter.name == "telegram"
    assert adapter.username == bot.username == "nbhelp_test_bot"
    with pytest.raises(ValueError, match="NBHELP_TELEGRAM__TOKEN"):
        TelegramAdapter(core, TelegramSettings())  # no token
    unstarted = TelegramAdapter(core, TelegramSettings(token=SecretStr("1:x")))
    await unstarted.stop()  # stopping what never started is a no-op


async def test_connected_while_polling_and_not_once_stopped(launch: Launch, core: Core) -> None:
    unstarted = TelegramAdapter(core, TelegramSettings(token=SecretStr("1:x")))
    assert unstarted.connected is False and not adapter_check(unstarted).ok
    adapter, bot = await launch()
    await bot.wait_calls("getUpdates", 1)
    assert adapter.connected is True and adapter_check(adapter).ok
    await adapter.stop()
    assert adapter.connected is False and not adapter_check(adapter).ok


async def test_rejected_token_never_appears_in_the_error(
    fake: FakeTelegram, core: Core, settings: Settings, tmp_path: Path
) -> None:
    token = "424242:REVOKED-token-must-not-leak"
    fake.revoke(token)
    adapter = TelegramAdapter(
        core,
        TelegramSettings(token=SecretStr(token), base_url=fake.base_url),
    )
    log_file = tmp_path / "bot.log"
    logs.setup("DEBUG", [token], log_file)  # as the bot sets up its log
    try:
        with pytest.raises(AdapterRefused) as err:
            await adapter.start()
        logging.getLogger("nbhelp").exception("start failed")
    finally:
        logs.setup("WARNING")
    assert "NBHELP_TELEGRAM__TOKEN" in str(err.value)
    assert adapter.connected is False
    assert token not in str(err.value) and err.value.__suppress_context__
    text = log_file.read_text()
    assert "start failed" in text and token not in text
