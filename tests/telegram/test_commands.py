"""Every command through the real Application and the fake Bot API; chats, groups, admins."""

from __future__ import annotations

import re

import pytest

from bot.adapters.telegram import Limits
from bot.core.app import Core
from tests.fakes.telegram_api import FakeBot, parse_html, utf16
from tests.helpers import REGISTRY
from tests.telegram.conftest import USERNAME, Launch

pytestmark = pytest.mark.asyncio(loop_scope="module")
GROUP = -100_200


async def ask(bot: FakeBot, text: str, chat_id: int = 1001, **kw: object) -> list[str]:
    """Send ``text`` and return the visible text of the answer's messages."""
    before = len(bot.sent(chat_id))
    msg = bot.send(text, chat_id=chat_id, **kw)
    calls = await bot.wait_sent(before + 1, chat_id)
    for c in calls[before:]:
        assert c.params.get("parse_mode") in ("HTML", None)
    if chat_id < 0:  # in groups the answer replies to the command
        assert calls[before].params["reply_parameters"]["message_id"] == msg["message_id"]
    return [c.result.get("text", "") for c in calls[before:]]


EXPECTED = {
    "/help": ["/status", "/alternatives", "/tips"],
    "/start": ["/status colab"],
    "/status azure": ["2021-01-15", "GitHub Codespaces"],
    "/alternatives colab gpu": ["Kaggle", "→"],
    "/platforms": ["kaggle", "Retired: Azure Notebooks"],
    "/tips restriction in your location": ["country", "not an outage"],
}


@pytest.mark.parametrize("text", list(EXPECTED))
async def test_core_commands_in_a_private_chat(launch: Launch, text: str) -> None:
    _, bot = await launch()
    shown = "\n".join(await ask(bot, text)).lower()
    for needle in EXPECTED[text]:
        assert needle.lower() in shown, (text, needle, shown[:500])


async def test_every_registered_command_answers_once(launch: Launch) -> None:
    """Whatever the registry holds when this runs (/run, /report, /subscribe included)."""
    _, bot = await launch()
    commands = list(REGISTRY.commands.values())
    assert {"help", "start", "status", "alternatives", "platforms", "tips"} <= {
        c.name for c in commands
    }
    for i, cmd in enumerate(commands):
        text = cmd.examples[0] if cmd.examples else f"/{cmd.name}"
        chat = 5000 + i
        bot.send(text, chat_id=chat)
        calls = await bot.wait_sent(1, chat, within=30)  # /run may start a kernel
        assert calls[0].ok
        if calls[0].method == "sendMessage":
            assert calls[0].params["parse_mode"] == "HTML"
            assert utf16(parse_html(calls[0].params["text"])) <= 4096
    failed = bot.calls_of(ok=False)
    assert not failed, [(c.method, c.error) for c in failed]


async def test_command_menu_is_registered_from_the_registry(launch: Launch) -> None:
    _, bot = await launch()
    names = [c["command"] for c in bot.commands]
    assert names == [c.name for c in REGISTRY.visible()]
    assert "start" not in names  # hidden
    assert all(re.fullmatch(r"[a-z0-9_]{1,32}", n) for n in names)
    assert all(1 <= len(c["description"]) <= 256 for c in bot.commands)


async def test_group_suffixes(launch: Launch) -> None:
    _, bot = await launch()
    kw = {"chat_id": GROUP, "chat_type": "supergroup"}
    assert "2021-01-15" in "".join(await ask(bot, f"/status@{USERNAME} azure", **kw))
    assert "2021-01-15" in "".join(await ask(bot, f"/status@{USERNAME.upper()} azure", **kw))
    ignored = [
        bot.send("/status@otherbot azure", **kw),
        bot.send("/frobnicate", **kw),  # an unknown bare command: probably another bot's
        bot.send("hello everyone", **kw),  # not a command
    ]
    answer = await ask(bot, f"/frobnicate@{USERNAME}", **kw)
    assert "I don't know the command /frobnicate" in answer[0]
    answer = await ask(bot, "/help", **kw)  # a known bare command is answered
    assert "/status" in answer[0]
    replied_to = [c.params["reply_parameters"]["message_id"] for c in bot.sent(GROUP)]
    assert not {m["message_id"] for m in ignored} & set(replied_to)
    assert len(bot.sent(GROUP)) == 4


async def test_other_bots_command_in_private_is_ignored(launch: Launch) -> None:
    _, bot = await launch()
    bot.send("/help@otherbot", chat_id=7)
    answer = await ask(bot, "just words", chat_id=7)  # private: everything gets an answer
    assert "Send a command" in answer[0]
    assert len(bot.sent(7)) == 1


async def test_admin_only_command_checks_membership(launch: Launch, test_core: Core) -> None:
    _, bot = await launch(limits=Limits(chat_burst=20))  # many answers in one group, fast
    kw = {"chat_id": GROUP, "chat_type": "group"}
    bot.set_member(GROUP, 11, "member")
    bot.set_member(GROUP, 12, "administrator")
    bot.set_member(GROUP, 13, "creator")
    assert "Only an admin" in (await ask(bot, "/adm", user_id=11, **kw))[0]
    assert "admin thing done" in (await ask(bot, "/adm", user_id=12, **kw))[0]
    assert "admin thing done" in (await ask(bot, "/adm", user_id=13, **kw))[0]
    assert len(bot.calls_of("getChatMember")) == 3
    assert "admin thing done" in (await ask(bot, "/adm", user_id=12, **kw))[0]  # cached
    assert "echo: hi" in (await ask(bot, "/echo hi", user_id=11, **kw))[0]  # not admin-only
    assert "admin thing done" in (await ask(bot, "/adm", user_id=11, chat_id=11))[0]  # private
    anonymous = {"id": GROUP, "type": "group", "title": "g"}
    assert "admin thing done" in (await ask(bot, "/adm", sender_chat=anonymous, **kw))[0]
    assert len(bot.calls_of("getChatMember")) == 3
    assert [c.params["user_id"] for c in bot.calls_of("getChatMember")] == [11, 12, 13]


async def test_admin_lookup_failure_means_not_admin(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    bot.fail("getChatMember", code=400, description="Bad Request: user not found")
    kw = {"chat_id": GROUP, "chat_type": "group"}
    bot.set_member(GROUP, 12, "administrator")
    assert "Only an admin" in (await ask(bot, "/adm", user_id=12, **kw))[0]
    assert "admin thing done" in (await ask(bot, "/adm", user_id=12, **kw))[0]  # not cached


async def test_replied_to_text_reaches_the_command(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    original = bot.message("print(6 * 7)", chat_id=GROUP, chat_type="supergroup", user_id=3)
    answer = await ask(bot, "/replied", chat_id=GROUP, reply_to=original, user_id=4)
    assert "replied: print(6 * 7)" in answer[0]
    answer = await ask(bot, "/replied", chat_id=9)
    assert "(nothing)" in answer[0]


async def test_forum_topic_answers_stay_in_the_topic(launch: Launch) -> None:
    _, bot = await launch()
    await ask(bot, "/help", chat_id=GROUP, chat_type="supergroup", thread_id=77)
    assert bot.sent(GROUP)[0].params["message_thread_id"] == 77


async def test_report_and_subscribe_in_a_group(launch: Launch) -> None:
    """The monitor's commands through Telegram: /subscribe is admin-only in groups."""
    if REGISTRY.get("subscribe") is None or REGISTRY.get("report") is None:
        pytest.skip("the outage monitor's commands are not registered")
    _, bot = await launch(limits=Limits(chat_burst=20))
    kw = {"chat_id": GROUP, "chat_type": "supergroup"}
    bot.set_member(GROUP, 21, "member")
    bot.set_member(GROUP, 22, "administrator")
    assert "Only an admin" in (await ask(bot, "/subscribe colab", user_id=21, **kw))[0]
    answer = (await ask(bot, "/subscribe colab", user_id=22, **kw))[0]
    assert "alerts" in answer and "Only an admin" not in answer
    assert [c.params["user_id"] for c in bot.calls_of("getChatMember")] == [21, 22]
    answer = " ".join(await ask(bot, "/report colab cannot connect to runtime", user_id=21, **kw))
    assert "Sorry, something went wrong" not in answer and "colab" in answer.lower()
    assert not bot.calls_of("getChatMember", ok=None)[2:]  # /report needs no admin check
