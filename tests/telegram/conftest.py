"""The real python-telegram-bot ``Application`` against the fake Bot API on 127.0.0.1.

One fake server per test module (``pytestmark`` in each module runs its tests in the module's
event loop); every test gets a fresh bot token, so tests never see each other's traffic.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from bot.adapters.telegram import TelegramAdapter
from bot.core.app import Core
from bot.core.registry import Command, Registry
from bot.delivery.settings import DeliverySettings
from bot.settings import Settings, TelegramSettings
from bot.wiring import build_core
from handlers import help as help_handlers
from tests.fakes.telegram_api import FakeBot, FakeTelegram
from tests.telegram import handlers as h

USERNAME = "nbhelp_test_bot"
Launch = Callable[..., Awaitable[tuple[TelegramAdapter, FakeBot]]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # python-telegram-bot warns about its own RetryAfter.retry_after type change (v22.2)
    mark = pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")
    for item in items:
        if "tests/telegram/" in str(item.path).replace("\\", "/"):
            item.add_marker(mark)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings, with a failed send retried after 0.05 s instead of 1 s."""
    return Settings(  # type: ignore[call-arg]
        db=tmp_path / "nbhelp.db",
        out_dir=tmp_path / "out",
        delivery=DeliverySettings(retry_initial_s=0.05, retry_max_s=1.0),
        _env_file=None,
    )


@pytest_asyncio.fixture(loop_scope="module")
async def core(settings: Settings) -> AsyncIterator[Core]:
    """The shared core, on this package's module-scoped loop (its services live there)."""
    c = build_core(settings)
    yield c
    await c.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def tg_settings(fake: FakeTelegram, bot: FakeBot, **extra: Any) -> TelegramSettings:
    return TelegramSettings(
        token=SecretStr(bot.token),
        base_url=fake.base_url,
        base_file_url=fake.base_file_url,
        **extra,
    )


@pytest_asyncio.fixture(loop_scope="module")
async def launch(fake: FakeTelegram, core: Core, settings: Settings) -> AsyncIterator[Launch]:
    """Start adapters (a new fake bot each); all are stopped at the end of the test. In
    webhook mode a web server (as the bot's own bot/web server does) serves the adapter's
    route at the URL's host and port."""
    started: list[TelegramAdapter] = []
    servers: list[web.AppRunner] = []

    async def _launch(
        *,
        username: str = USERNAME,
        settings_update: dict[str, Any] | None = None,
        prepare: Callable[[FakeBot], object] | None = None,
        **kw: Any,
    ) -> tuple[TelegramAdapter, FakeBot]:
        bot = fake.new_bot(username)
        if prepare is not None:
            prepare(bot)  # e.g. inject failures before the adapter's first call
        kw.setdefault("typing_after_s", 5.0)  # no chat-action noise unless a test wants it
        adapter = TelegramAdapter(core, tg_settings(fake, bot, **(settings_update or {})), **kw)
        hook = (settings_update or {}).get("webhook_url")
        if hook:
            app = web.Application()
            app.add_routes(adapter.web_routes())
            runner = web.AppRunner(app)
            await runner.setup()
            where = urlsplit(hook)
            await web.TCPSite(runner, where.hostname, where.port).start()
            servers.append(runner)
        await adapter.start()
        started.append(adapter)
        return adapter, bot

    yield _launch
    for adapter in started:
        await asyncio.wait_for(adapter.stop(), 60)
    for runner in servers:
        await runner.cleanup()


def make_registry() -> Registry:
    """The real commands' neighbours for tests: images, files, long output, admin-only …"""
    r = Registry()
    r.add(Command("help", "List the commands, or explain one", help_handlers.help))
    r.add(Command("echo", "Echo the arguments", h.echo))
    r.add(Command("replied", "Show the replied-to text", h.replied))
    r.add(Command("adm", "Admin-only thing", h.admin_only, admin_in_groups=True))
    r.add(Command("long", "A long reply", h.long))
    r.add(Command("photo", "Images", h.photo))
    r.add(Command("doc", "A file", h.document))
    r.add(Command("slow", "Waits for the test", h.slow))
    r.add(Command("work", "A stand-in /run", h.work, lane="run"))
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def test_core(core: Core) -> Core:
    core.use_commands(make_registry())
    return core
