"""The real discord.py client and command tree against :mod:`tests.fakes.discord_api`.

Every test that starts a bot also checks, at teardown, the rules that hold for every
interaction and message: each interaction acknowledged within Discord's 3-second window,
every message sent with ``allowed_mentions`` none, no request to an endpoint the fake does
not know.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from bot.adapters.discord import DiscordAdapter
from bot.core.app import Core
from bot.core.registry import PLATFORM, Command, Option, Registry
from bot.settings import DiscordSettings, Settings
from tests.discord_adapter import handlers
from tests.fakes.discord_api import GUILD_ID, FakeDiscord, FakeInteraction
from tests.helpers import build_registry

WAIT_S = 60.0  # a bound for "never", not a speed: a loaded machine is slow


def registry_for_tests() -> Registry:
    """The core's real commands plus test-only ones (replacing any of the same name)."""
    r = build_registry()
    extra = [
        Command(
            "run",
            "Run Python code in your own kernel",
            handlers.run,
            (Option("code", "Python code, inline or a fenced block", required=True, rest=True),),
        ),
        Command(
            "subscribe",
            "Outage alerts for this chat",
            handlers.subscribe,
            (
                Option(
                    "platforms",
                    "Platforms to watch, e.g. colab",
                    autocomplete="platforms",
                    rest=True,
                ),
            ),
            admin_in_groups=True,
        ),
        Command(
            "whoami",
            "Who the bot thinks you are",
            handlers.whoami,
            (Option("words", "Any words", rest=True),),
        ),
        Command(
            "echo",
            "Say it back",
            handlers.echo,
            (Option("text", "Text", required=True, rest=True),),
        ),
        Command(
            "echocode",
            "Say it back as code",
            handlers.echo_code,
            (Option("text", "Text", required=True, rest=True),),
        ),
        Command("slow", "Takes its time", handlers.slow, (Option("seconds", "How long"),)),
        Command("held", "Waits for the test", handlers.held),
        Command(
            "files", "Sends files", handlers.files, (Option("size", "Image bytes", type="integer"),)
        ),
        Command("card", "A status card", handlers.status_card, (PLATFORM,)),
        Command(
            "level",
            "Choices and flags",
            handlers.whoami,
            (
                Option("level", "How loud", required=True, choices=("low", "high")),
                Option("count", "How many", type="integer"),
                Option("flag", "A flag", type="boolean"),
            ),
        ),
    ]
    for c in extra:
        r.commands[c.name] = c
    return r


def discord_settings(fake: FakeDiscord, *, guild: bool = True) -> DiscordSettings:
    return DiscordSettings(
        token=SecretStr(fake.token),
        guild_id=GUILD_ID if guild else None,
        api_base=fake.api_base,
        gateway_url=fake.gateway_url,
    )


def check_rules(fake: FakeDiscord) -> None:
    late = fake.unacknowledged()
    assert not late, [
        (ix.payload["data"].get("name") or ix.payload["data"].get("custom_id"), ix.ack_latency)
        for ix in late
    ]
    for sent in fake.all_sent():
        if sent.via == "callback" and not (sent.content or sent.embeds):
            continue  # a deferred "thinking" message carries no text
        assert sent.allowed_mentions == {"parse": []}, sent.payload
        assert sent.pings() == []
    assert not fake.unexpected, fake.unexpected


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as f:
        yield f


MakeBot = Callable[..., Awaitable[DiscordAdapter]]


@pytest.fixture
async def make_bot(core: Core, settings: Settings, fake: FakeDiscord) -> AsyncIterator[MakeBot]:
    started: list[tuple[DiscordAdapter, FakeDiscord]] = []

    async def make(
        *, registry: Registry | None = None, guild: bool = True, on: FakeDiscord | None = None
    ) -> DiscordAdapter:
        core.use_commands(registry_for_tests() if registry is None else registry)
        # no live services in-process: the outage monitor would probe real status pages
        # (no test may reach the internet) and the kernel pool would start sandboxes
        getattr(core.ctx, "factories", {}).clear()
        f = on or fake
        adapter = DiscordAdapter(core, discord_settings(f, guild=guild))
        await adapter.start()
        started.append((adapter, f))
        await f.wait_ready(WAIT_S)
        return adapter

    yield make
    for adapter, f in started:
        await adapter.stop()
        check_rules(f)


@pytest.fixture
async def bot(make_bot: MakeBot) -> DiscordAdapter:
    return await make_bot()


async def replies(fake: FakeDiscord, ix: FakeInteraction, n: int = 1) -> FakeInteraction:
    """Wait until the interaction shows ``n`` messages (deferred "thinking" ones excluded)."""
    await fake.wait_for(lambda: len(ix.messages) >= n, WAIT_S)
    return ix


def sample_options(command: Command) -> dict[str, Any]:
    """Plausible option values for any registry command (for the every-command test)."""
    out: dict[str, Any] = {}
    for opt in command.options:
        if opt.choices:
            out[opt.name] = opt.choices[0]
        elif opt.autocomplete == "platforms":
            out[opt.name] = "colab"
        elif opt.autocomplete == "needs":
            out[opt.name] = "gpu"
        elif opt.type == "integer":
            if opt.required:
                out[opt.name] = 1
        elif opt.type == "boolean":
            if opt.required:
                out[opt.name] = True
        elif command.name == "run" or opt.name == "code":
            out[opt.name] = "print(6 * 7)"
        elif opt.required or opt.rest:
            out[opt.name] = "restriction in your location" if opt.rest else "status"
    return out
