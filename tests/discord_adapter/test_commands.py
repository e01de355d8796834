"""Slash commands from the registry: sync, every command end to end, autocomplete,
permissions, and the inbound mapping."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import discord
import pytest

from bot.adapters.discord.replies import build
from bot.core.app import Core
from tests.discord_adapter.conftest import (
    MakeBot,
    registry_for_tests,
    replies,
    sample_options,
)
from tests.fakes.discord_api import (
    ADMINISTRATOR,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    MEMBER_PERMISSIONS,
    PRIVILEGED_INTENTS,
    USER_ID,
    FakeDiscord,
)
from tests.helpers import REGISTRY


def test_the_library_is_not_shadowed() -> None:
    import bot.adapters.discord as ours

    assert "site-packages" in Path(discord.__file__).parts
    assert hasattr(discord, "Client") and hasattr(discord, "app_commands")
    assert Path(ours.__file__).parent.name == "discord"
    assert sys.modules["discord"] is discord


async def test_commands_sync_to_the_guild_with_options(bot, fake: FakeDiscord) -> None:
    registry = registry_for_tests()
    synced = {c["name"]: c for c in fake.synced[GUILD_ID]}
    assert None not in fake.synced  # a development guild: no global sync
    expected = {c.name for c in registry.visible()} | {"Run code"}
    assert set(synced) == expected
    assert "start" not in synced and "alt" not in synced  # hidden command, alias
    for command in registry.visible():
        payload = synced[command.name]
        assert payload["description"] == command.description
        assert len(payload["description"]) <= 100
        required = [o.name for o in command.options if o.required and command.name != "run"]
        optional = [o.name for o in command.options if o.name not in required]
        assert [o["name"] for o in payload["options"]] == required + optional  # required first
        for o in payload["options"]:
            assert 1 <= len(o["description"]) <= 100

    alt = {o["name"]: o for o in synced["alternatives"]["options"]}
    assert alt["platform"] == {
        "type": 3,
        "name": "platform",
        "description": "A notebook platform, e.g. colab",
        "required": False,
        "autocomplete": True,
    }
    assert alt["needs"]["autocomplete"] is True and alt["needs"]["type"] == 3  # rest → string
    tips = synced["tips"]["options"][0]
    assert tips["required"] is True and tips["type"] == 3
    level = {o["name"]: o for o in synced["level"]["options"]}
    assert level["level"]["choices"] == [
        {"name": "low", "value": "low"},
        {"name": "high", "value": "high"},
    ]
    assert "autocomplete" not in level["level"]
    assert level["count"]["type"] == 4 and level["flag"]["type"] == 5
    # /run's code is optional on Discord (empty → modal), even though the registry requires it
    run_code = synced["run"]["options"][0]
    assert run_code["name"] == "code" and run_code["required"] is False
    assert synced["subscribe"]["default_member_permissions"] == str(MANAGE_GUILD)
    assert synced["status"]["default_member_permissions"] is None
    menu = fake.command("Run code", ctype=3)
    assert menu["type"] == 3
    # slash commands need no privileged intents
    assert fake.identifies and all(
        not int(i["intents"]) & PRIVILEGED_INTENTS for i in fake.identifies
    )


async def test_without_a_guild_commands_sync_globally(make_bot: MakeBot, fake) -> None:
    await make_bot(guild=False)
    assert set(fake.synced) == {None}
    ix = await fake.slash("help", guild=False)
    await replies(fake, ix)
    assert "/status" in ix.text()


# --- every command of the core's registry, through INTERACTION_CREATE ----------------------

EXPECTED_TEXT = {
    "help": "/status",
    "status": "",
    "alternatives": "",
    "platforms": "Google Colab",
    "tips": "",
}


@pytest.mark.parametrize("name", [c.name for c in REGISTRY.visible()])
async def test_every_registry_command_answers(
    make_bot: MakeBot, fake: FakeDiscord, core: Core, name: str
) -> None:
    from tests.helpers import build_registry

    registry = build_registry()
    await make_bot(registry=registry)
    command = registry.get(name)
    assert command is not None
    options = sample_options(command)
    ix = await fake.slash(name, options, permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
    await replies(fake, ix)
    assert ix.ack_latency is not None and ix.ack_latency < 3.0
    assert ix.text().strip()
    assert EXPECTED_TEXT.get(name, "") in ix.text()


@pytest.mark.parametrize(
    ("name", "options", "text"),
    [
        ("help", {}, "/help"),
        ("help", {"command": "status"}, "/help status"),
        ("status", {"platform": "azure-notebooks"}, "/status azure-notebooks"),
        ("alternatives", {"platform": "colab", "needs": "gpu"}, "/alternatives colab gpu"),
        ("alternatives", {"needs": "no-phone offline"}, "/alternatives no-phone offline"),
        ("platforms", {}, "/platforms"),
        ("platforms", {"platform": "kaggle"}, "/platforms kaggle"),
        ("tips", {"words": "mount drive"}, "/tips mount drive"),
    ],
)
async def test_known_commands_match_the_core(
    bot, fake: FakeDiscord, core: Core, name: str, options: dict, text: str
) -> None:
    """The Discord answer is exactly the core's reply for the joined arguments."""
    ix = await fake.slash(name, options)
    reply = await core.handle_text(
        text, platform="discord", chat_id=str(CHANNEL_ID), user_id=str(USER_ID)
    )
    assert reply is not None
    expected = build(reply)
    await replies(fake, ix, len(expected))
    got = ix.messages[: len(expected)]
    for out, sent in zip(expected, got, strict=True):
        if out.embed is not None:
            assert len(sent.embeds) == 1
            assert sent.embeds[0].get("title") == out.embed.title
            assert sent.embeds[0].get("description") == out.embed.description
            assert sent.embeds[0]["color"] == out.embed.colour.value  # type: ignore[union-attr]
        else:
            assert sent.content == out.content
    if name in ("help", "platforms", "tips", "alternatives"):
        assert ix.response_type == 4  # fast knowledge-base answers need no defer
    if name == "status":
        assert ix.response_type == 5  # status checks defer first
    if name == "alternatives" and "platform" in options:
        assert got[0].embeds[0]["title"].startswith("Instead of Google Colab")


async def test_a_status_card_is_an_embed_coloured_by_tone(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("card", {"platform": "colab"})
    await replies(fake, ix)
    (embed,) = ix.messages[0].embeds
    assert embed["title"] == "Google Colab — down"
    assert embed["color"] == 0xED4245
    assert "12 reports" in embed["description"]
    assert embed["image"]["url"] == "attachment://uptime.png"
    assert [name for name, _ in ix.messages[0].files] == ["uptime.png"]


# --- autocomplete -------------------------------------------------------------------------


async def test_autocomplete_offers_platform_ids(bot, fake: FakeDiscord, core: Core) -> None:
    ids = set(core.ctx.knowledge.platforms)
    ix = await fake.autocomplete("status", {"platform": "col"}, "platform")
    await fake.wait_for(lambda: ix.choices() is not None)
    choices = ix.choices()
    assert choices and choices[0]["value"] == "colab"
    assert {c["value"] for c in choices} <= ids
    assert ix.ack_latency is not None and ix.ack_latency < 3.0

    ix = await fake.autocomplete("alternatives", {"platform": ""}, "platform")
    await fake.wait_for(lambda: ix.choices() is not None)
    values = [c["value"] for c in ix.choices() or []]
    assert 1 <= len(values) <= 25 and set(values) <= ids
    assert values[-1] == "azure-notebooks"  # retired ones last
    # an alias finds its platform
    ix = await fake.autocomplete("platforms", {"platform": "google"}, "platform")
    await fake.wait_for(lambda: ix.choices() is not None)
    assert "colab" in [c["value"] for c in ix.choices() or []]


async def test_autocomplete_of_several_platforms_completes_the_last_word(
    bot, fake: FakeDiscord
) -> None:
    ix = await fake.autocomplete("subscribe", {"platforms": "colab ka"}, "platforms")
    await fake.wait_for(lambda: ix.choices() is not None)
    values = [c["value"] for c in ix.choices() or []]
    assert values[0] == "colab kaggle" and all(v.startswith("colab ") for v in values)


async def test_autocomplete_of_needs_completes_the_last_word(bot, fake: FakeDiscord) -> None:
    ix = await fake.autocomplete("alternatives", {"needs": "gpu no-"}, "needs")
    await fake.wait_for(lambda: ix.choices() is not None)
    values = [c["value"] for c in ix.choices() or []]
    assert "gpu no-phone" in values and "gpu no-card" in values
    assert all(v.startswith("gpu no-") for v in values)
    assert all(len(c["name"]) <= 100 for c in ix.choices() or [])


# --- permissions and the inbound mapping ---------------------------------------------------


async def test_subscribe_needs_manage_server_in_a_server(bot, fake: FakeDiscord) -> None:
    refused = await fake.slash("subscribe", {"platforms": "colab"})
    await replies(fake, refused)
    assert "Only an admin" in refused.text()
    assert refused.messages[0].ephemeral  # only the caller sees the refusal
    assert "subscribed" not in refused.text()

    allowed = await fake.slash(
        "subscribe", {"platforms": "colab"}, permissions=MEMBER_PERMISSIONS | MANAGE_GUILD
    )
    await replies(fake, allowed)
    assert f"subscribed {CHANNEL_ID} to colab" in allowed.text()

    admin = await fake.slash("subscribe", {}, permissions=MEMBER_PERMISSIONS | ADMINISTRATOR)
    await replies(fake, admin)
    assert "subscribed" in admin.text()

    dm = await fake.slash("subscribe", {"platforms": "kaggle"}, guild=False)
    await replies(fake, dm)
    assert f"subscribed {DM_CHANNEL_ID} to kaggle" in dm.text()


async def test_inbound_mapping_in_a_server_and_in_dms(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("whoami", {"words": "hello there"})
    await replies(fake, ix)
    text = ix.text()
    assert "platform=discord" in text
    assert f"chat\\_id={CHANNEL_ID}" in text or f"chat_id={CHANNEL_ID}" in text
    assert f"user_id={USER_ID}" in text
    assert "display_name=Ama" in text
    assert "private=False" in text and "admin=False" in text
    assert "args=hello there" in text

    ix = await fake.slash("whoami", {}, permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
    await replies(fake, ix)
    assert "admin=True" in ix.text()

    ix = await fake.slash("whoami", {}, guild=False)
    await replies(fake, ix)
    assert f"chat_id={DM_CHANNEL_ID}" in ix.text()
    assert "private=True" in ix.text() and "admin=True" in ix.text()


async def test_options_are_joined_in_registry_order(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("level", {"flag": True, "count": 3, "level": "high"})
    await replies(fake, ix)
    assert "args=high 3 yes" in ix.text()


async def test_an_unknown_command_is_still_answered(bot, fake: FakeDiscord) -> None:
    """A command Discord still shows but the bot no longer has: an answer, never silence."""
    ix = await fake.interact(2, {"id": "1", "name": "vanished", "type": 1, "options": []})
    await replies(fake, ix)
    assert "did not work" in ix.text() and ix.messages[0].ephemeral


async def test_registry_without_run_has_no_context_menu(make_bot: MakeBot, fake) -> None:
    registry = registry_for_tests()
    registry.commands.pop("run")
    registry = dataclasses.replace(registry)
    await make_bot(registry=registry)
    names = {c["name"] for c in fake.synced[GUILD_ID]}
    assert "Run code" not in names and "run" not in names
