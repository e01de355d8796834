"""Every issue-2 command end to end through the core, and the bad input it must survive."""

from __future__ import annotations

import logging

import pytest

from bot.core.app import Core
from bot.core.models import Inbound, Reply, para
from bot.core.registry import Command, Registry
from bot.core.render import DiscordRenderer, TelegramRenderer, units
from tests.conftest import Chat
from tests.helpers import REGISTRY


async def test_help_lists_every_visible_command(chat: Chat) -> None:
    text = await chat.say("/help")
    for cmd in REGISTRY.visible():
        assert f"/{cmd.name}" in text
    assert "/start" not in text.split("Try")[0]  # hidden


async def test_help_for_one_command(chat: Chat) -> None:
    text = await chat.say("/help alternatives")
    assert "/alternatives [platform] [needs…]" in text and "gpu" in text
    assert "Did you mean" in await chat.say("/help statuss")


async def test_start(chat: Chat) -> None:
    assert "/status colab" in await chat.say("/start")


async def test_alternatives_colab_gpu(chat: Chat) -> None:
    text = await chat.say("/alternatives colab gpu")
    lines = [line for line in text.splitlines() if line[:2] in {"1.", "2."}]
    assert any("Kaggle" in line for line in lines)
    assert "Google Colab" not in text.split("\n", 1)[1]  # never the named platform (title aside)
    assert "Phone verification" in text  # Kaggle's caveat
    assert "→" in text  # a first step


async def test_alternatives_gpu_no_phone_puts_kaggle_below_the_fits(chat: Chat) -> None:
    """Kaggle's GPU needs a phone: it no longer appears as a fit beside a phone warning; five
    platforms that do not contradict the request come first."""
    text = await chat.say("/alternatives colab gpu no-phone")
    items = [line for line in text.splitlines() if line.split(".", 1)[0].isdigit()]
    assert len(items) == 5 and not any("Kaggle" in line for line in items)
    assert "no phone number needed, with conditions" not in text


async def test_alternatives_offline_leads_with_offline(chat: Chat) -> None:
    text = await chat.say("/alternatives colab offline")
    first = next(line for line in text.splitlines() if line.startswith("1."))
    assert "Jupyter on your own computer" in first


async def test_alternatives_did_you_mean(chat: Chat) -> None:
    text = await chat.say("/alternatives colabb")
    assert "Did you mean" in text and "colab" in text
    text = await chat.say("/alternatives kaggle gpuu")
    assert "gpu" in text.split("Did you mean")[1]


async def test_alternatives_for_retired_platform(chat: Chat) -> None:
    text = await chat.say("/alternatives azure")
    assert "retired on 2021-01-15" in text and "1." in text


async def test_status_azure_gives_retirement(chat: Chat) -> None:
    text = await chat.say("/status azure notebooks")
    assert "2021-01-15" in text and "GitHub Codespaces" in text


async def test_tips_explains_location_restriction(chat: Chat) -> None:
    text = await chat.say("/tips restriction in your location")
    assert "country" in text.lower() and "not an outage" in text.lower()


async def test_tips_full_text_search(chat: Chat) -> None:
    text = await chat.say("/tips how do I mount my google drive")
    assert "drive.mount" in text
    assert "I have no tip for that yet" in await chat.say("/tips zzqqxx")
    assert "Tell me what to look up" in await chat.say("/tips")


async def test_platforms_overview_and_card(chat: Chat) -> None:
    overview = await chat.say("/platforms")
    assert "kaggle" in overview and "Retired: Azure Notebooks" in overview
    card = await chat.say("/platforms studio lab")
    assert "Move a notebook there" in card and "studiolab" in card.lower()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "/",
        "hello",
        "/nosuchcommand",
        "/alternatives " + "x " * 50_000,
        "/tips \x00\x00\x00",
        "/alternatives \u202egpu\u202c 🐍🐍",
        "/tips @everyone <b>bold</b> **x** `y`",
        "/platforms <script>alert(1)</script>",
        "/status @here",
    ],
)
async def test_bad_input_gets_a_short_helpful_reply(chat: Chat, text: str) -> None:
    reply = await chat.reply(text)
    for renderer in (TelegramRenderer(), DiscordRenderer()):
        out = renderer.render(reply)
        assert out.messages and all(units(m) <= renderer.limit for m in out.messages)
        assert all("@everyone" not in m and "@here" not in m for m in out.messages)
        assert all("<script>" not in m for m in out.messages)
    plain = await chat.say(text)
    assert "Traceback" not in plain and len(plain) < 3000


async def test_unknown_command_suggests(chat: Chat) -> None:
    text = await chat.say("/alternativs gpu")
    assert "/alternatives" in text and "/help" in text


async def test_long_arguments_are_cut_and_said(chat: Chat) -> None:
    text = await chat.say("/tips " + "drive " * 10_000)
    assert "cut to its first" in text


async def test_unexpected_error_becomes_error_id_in_reply_and_log(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    registry.add(Command("boom", "Always fails", _boom))
    core.use_commands(registry)
    with caplog.at_level(logging.ERROR):
        reply = await core.handle(Inbound("test", "c", "u", "u", "boom"))
    text = TelegramRenderer().render(reply).messages[0]
    error_id = text.split("<code>")[1].split("</code>")[0]
    assert len(error_id) == 8
    assert "Traceback" not in text and "kaboom" not in text
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


async def _boom(ctx: object, msg: Inbound) -> Reply:
    raise RuntimeError("kaboom")


async def test_admin_only_command_in_group(core: Core) -> None:
    registry = Registry()
    registry.add(Command("adm", "Admin thing", _ok, admin_in_groups=True))
    core.use_commands(registry)
    member = Chat(core, private=False, admin=False)
    assert "Only an admin" in await member.say("/adm")
    assert "fine" in await Chat(core, private=False, admin=True).say("/adm")
    assert "fine" in await Chat(core, private=True).say("/adm")


async def _ok(ctx: object, msg: Inbound) -> Reply:
    return Reply.of(para("fine"))


async def test_other_bots_commands_are_ignored(core: Core) -> None:
    reply = await core.handle_text(
        "/status@otherbot", platform="test", chat_id="c", user_id="u", bot_username="nbhelpbot"
    )
    assert reply is None
