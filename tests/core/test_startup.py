"""A bot that survives its first minute: a chat platform that cannot be reached is retried while
the others serve, and a refusal stops only that platform."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

from pydantic import SecretStr

from bot.adapters.discord import DiscordAdapter
from bot.adapters.telegram import TelegramAdapter
from bot.runner import serve
from bot.settings import DiscordSettings, Settings, TelegramSettings
from bot.wiring import build_core
from tests.discord_adapter.conftest import replies
from tests.fakes.discord_api import GUILD_ID, FakeDiscord
from tests.fakes.telegram_api import FakeTelegram


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Attempts(logging.Handler):
    """Counts the runner's start-failure lines and wakes a waiter at a given count."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "cannot start" in record.getMessage():
            self.lines.append(self.format(record))
            self.changed.set()

    async def at_least(self, n: int) -> None:
        while len(self.lines) < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 60)


def bot_settings(tmp_path: Path) -> Settings:
    return Settings(
        db=tmp_path / "bot.db",
        monitor={"background": False, "control_urls": ()},
        run={"enabled": False},
        startup={"adapter_retry_initial_s": 0.05, "adapter_retry_max_s": 0.2},
        _env_file=None,  # type: ignore[call-arg]
    )


async def test_telegram_unreachable_at_start_is_retried_while_discord_answers(
    tmp_path: Path,
) -> None:
    port = free_port()
    telegram = FakeTelegram(port=port)  # not listening yet: "the network is down"
    tg_bot = telegram.new_bot("nbhelp_late_bot")
    attempts = Attempts()
    logging.getLogger("nbhelp.runner").addHandler(attempts)
    core = build_core(bot_settings(tmp_path))
    async with FakeDiscord() as discord:
        adapters = [
            TelegramAdapter(
                core,
                TelegramSettings(
                    token=SecretStr(tg_bot.token),
                    base_url=telegram.base_url,
                    base_file_url=telegram.base_file_url,
                ),
                typing_after_s=5.0,
            ),
            DiscordAdapter(
                core,
                DiscordSettings(
                    token=SecretStr(discord.token),
                    guild_id=GUILD_ID,
                    api_base=discord.api_base,
                    gateway_url=discord.gateway_url,
                ),
            ),
        ]
        stop = asyncio.Event()
        running = asyncio.create_task(serve(core, adapters, stop))
        try:
            await attempts.at_least(3)
            await discord.wait_ready(within=60)
            ix = await replies(discord, await discord.slash("help"))
            assert "/alternatives" in ix.text()  # Discord answers while Telegram is down
            await attempts.at_least(4)
            assert all("\n" not in line for line in attempts.lines)  # one line per attempt
            assert all("telegram cannot start (attempt" in line for line in attempts.lines)
            assert tg_bot.token not in " ".join(attempts.lines)
            await telegram.start()  # the network is back
            try:
                await tg_bot.wait_calls("getUpdates", 1, within=60)
                tg_bot.send("/help", chat_id=77)
                answer = (await tg_bot.wait_sent(1, 77, within=60))[0]
                assert "/alternatives" in answer.result["text"]
                ix = await replies(discord, await discord.slash("help"))
                assert "/alternatives" in ix.text()
            finally:
                stop.set()
                outcome = await asyncio.wait_for(running, 60)
                await telegram.close()
        finally:
            logging.getLogger("nbhelp.runner").removeHandler(attempts)
            stop.set()
    assert outcome.code == 0


async def test_a_refused_platform_stops_only_itself(tmp_path: Path) -> None:
    attempts = Attempts()
    logging.getLogger("nbhelp.runner").addHandler(attempts)
    core = build_core(bot_settings(tmp_path))
    async with FakeTelegram() as telegram, FakeDiscord() as discord:
        revoked = telegram.new_bot("nbhelp_revoked_bot")
        telegram.revoke(revoked.token)
        adapters = [
            TelegramAdapter(
                core, TelegramSettings(token=SecretStr(revoked.token), base_url=telegram.base_url)
            ),
            DiscordAdapter(
                core,
                DiscordSettings(
                    token=SecretStr(discord.token),
                    guild_id=GUILD_ID,
                    api_base=discord.api_base,
                    gateway_url=discord.gateway_url,
                ),
            ),
        ]
        stop = asyncio.Event()
        running = asyncio.create_task(serve(core, adapters, stop))
        await discord.wait_ready(within=60)
        ix = await replies(discord, await discord.slash("help"))
        assert "/alternatives" in ix.text()
        stop.set()
        outcome = await asyncio.wait_for(running, 60)
    logging.getLogger("nbhelp.runner").removeHandler(attempts)
    assert outcome.code == 0
    assert outcome.reasons == ["telegram: Telegram rejected the bot token (NBHELP_TELEGRAM__TOKEN)"]
    assert attempts.lines == []  # a refusal is not retried


async def test_every_platform_refused_stops_the_bot(tmp_path: Path) -> None:
    core = build_core(bot_settings(tmp_path))
    async with FakeTelegram() as telegram:
        revoked = telegram.new_bot("nbhelp_revoked_bot")
        telegram.revoke(revoked.token)
        adapter = TelegramAdapter(
            core, TelegramSettings(token=SecretStr(revoked.token), base_url=telegram.base_url)
        )
        outcome = await asyncio.wait_for(serve(core, [adapter]), 60)
    assert outcome.code == 1
