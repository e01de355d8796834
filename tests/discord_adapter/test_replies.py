"""Acknowledgement, reply shapes and /run: defer + follow-up with a plot, the modal, the
"Run code" context menu, the author-only Re-run button, mentions, splitting, limits."""

from __future__ import annotations

import re

from bot.adapters.discord import interactions, views
from bot.core.registry import Command, Option
from tests.discord_adapter import handlers
from tests.discord_adapter.conftest import MakeBot, registry_for_tests, replies
from tests.discord_adapter.handlers import PNG
from tests.fakes.discord_api import OTHER_USER_ID, USER_ID, FakeDiscord


async def test_run_defers_then_follows_up_with_the_plot(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("run", {"code": "plot([1, 2, 3])"})
    await replies(fake, ix)
    assert ix.response_type == 5  # deferred with "thinking" before any work
    assert ix.ack_latency is not None and ix.ack_latency < 3.0  # the window
    (result,) = ix.messages
    assert result.via == "followup"
    assert "plot(\\[1, 2, 3\\])" in result.content or "plot([1, 2, 3])" in result.content
    assert result.files == [("plot.png", PNG)]
    assert result.message["attachments"][0]["filename"] == "plot.png"
    (custom_id,) = result.custom_ids()
    assert custom_id.startswith(f"nbhelp:rerun:{USER_ID}:")


async def test_rerun_button_only_for_the_author(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("run", {"code": "x = 41; print(x + 1)"})
    await replies(fake, ix)
    first = ix.messages[-1]
    (custom_id,) = first.custom_ids()

    stranger = await fake.click(first, custom_id, user_id=OTHER_USER_ID, user_name="kofi")
    await replies(fake, stranger)
    assert "Only the person who ran this code" in stranger.text()
    assert stranger.messages[0].ephemeral

    again = await fake.click(first, custom_id)
    await replies(fake, again)
    assert again.response_type == 5
    assert "x = 41; print(x + 1)" in again.text()
    assert again.messages[-1].custom_ids() == [custom_id]  # the same job, re-runnable again


async def test_rerun_after_restart_explains_instead_of_failing(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("run", {"code": "print(1)"})
    await replies(fake, ix)
    bot.interactions.runs.clear()  # what a restart forgets
    again = await fake.click(ix.messages[-1], ix.messages[-1].custom_ids()[0])
    await replies(fake, again)
    assert "too old to re-run" in again.plain() and again.messages[0].ephemeral


async def test_run_without_code_opens_a_modal_for_multiline_code(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("run", {})
    await fake.wait_for(lambda: ix.modal())
    modal = ix.modal()
    assert modal is not None and modal["title"] == "Run code"
    (text_input,) = modal["components"][0]["components"]
    assert text_input["type"] == 4 and text_input["style"] == 2  # a paragraph input
    assert text_input["max_length"] == 4000

    code = "import math\nfor i in range(3):\n    print(math.pi * i)"
    submitted = await fake.submit_modal(modal, {"Python code": code})
    await replies(fake, submitted)
    assert submitted.response_type == 5
    assert "for i in range(3):\n    print(math.pi * i)" in submitted.text()
    assert submitted.messages[-1].custom_ids()  # re-runnable too


async def test_run_code_context_menu_runs_a_message(bot, fake: FakeDiscord) -> None:
    target = fake.message(
        1300000000000000003,
        "look at this:\n```python\nprint('from a message')\n```",
        author=fake.user(OTHER_USER_ID, "kofi"),
    )
    ix = await fake.message_command("Run code", target)
    await replies(fake, ix)
    assert ix.response_type == 5
    assert "print('from a message')" in ix.text()
    assert "look at this" not in ix.text()  # the handler got it as replied_text, code extracted
    assert ix.messages[-1].custom_ids()[0].startswith(f"nbhelp:rerun:{USER_ID}:")

    empty = await fake.message_command("Run code", fake.message(1300000000000000003, ""))
    await replies(fake, empty)
    assert "no text to run" in empty.text() and empty.messages[0].ephemeral


async def test_deferred_reply_with_image_and_file_attachments(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("files", {"size": 5000})
    await replies(fake, ix)
    (msg,) = ix.messages
    assert [name for name, _ in msg.files] == ["big_plot.png", "data.csv"]
    assert len(msg.files[0][1]) == 5000
    assert msg.payload["attachments"][1]["description"] == "the data"


async def test_files_over_the_interaction_limit_are_left_out(make_bot: MakeBot) -> None:
    async with FakeDiscord(filesize_limit=4000) as small:
        adapter = await make_bot(on=small)
        ix = await small.slash("files", {"size": 5000})
        await replies(small, ix)
        (msg,) = ix.messages
        assert [name for name, _ in msg.files] == ["data.csv"]  # 5000 B > 4000 B limit
        assert "Left out: big\\_plot.png" in msg.content
        assert not ix.rejected  # never a 413
        await adapter.stop()  # while its server is still there (stopping again is a no-op)


async def test_output_with_mass_and_role_mentions_pings_nobody(bot, fake: FakeDiscord) -> None:
    nasty = "@everyone @here <@&123456789012345678> <@987654321098765432> hi"
    for name in ("echo", "echocode", "run"):
        opt = "code" if name == "run" else "text"
        ix = await fake.slash(name, {opt: nasty})
        await replies(fake, ix)
        for sent in ix.messages:
            assert sent.allowed_mentions == {"parse": []}
            assert sent.pings() == []
        assert "@everyone" not in ix.text().replace("@\u200beveryone", "")


async def test_a_long_reply_arrives_as_messages_within_2000(bot, fake: FakeDiscord) -> None:
    words = " ".join(f"word{i:04d}" for i in range(280))  # ~2500 characters
    assert 2400 < len(words) < 2600
    ix = await fake.slash("echo", {"text": words})
    await replies(fake, ix, 2)
    assert all(len(m.content) <= 2000 for m in ix.messages)
    joined = " ".join(m.content for m in ix.messages)
    assert all(f"word{i:04d}" in joined for i in range(280))


async def test_long_code_output_is_split_without_breaking_a_block(bot, fake: FakeDiscord) -> None:
    code = "\n".join(f"print({i:05d})  # a line of output" for i in range(90))  # ~3000 chars
    ix = await fake.slash("echocode", {"text": code})
    await replies(fake, ix, 2)
    for m in ix.messages:
        assert len(m.content) <= 2000
        assert m.content.count("```") % 2 == 0  # every block closed in its own message
    assert all(f"print({i:05d})" in ix.text() for i in range(90))


async def test_very_long_output_becomes_reply_txt(bot, fake: FakeDiscord) -> None:
    code = "\n".join(f"line {i} " + "x" * 60 for i in range(200))  # ~14 000 chars
    ix = await fake.slash("echocode", {"text": code})
    await replies(fake, ix)
    (msg,) = ix.messages
    names = [n for n, _ in msg.files]
    assert names == ["reply.txt"] and b"line 199" in msg.files[0][1]


async def test_fast_command_that_turns_slow_is_deferred_in_time(
    make_bot: MakeBot, fake: FakeDiscord
) -> None:
    registry = registry_for_tests()
    registry.commands["tips"] = Command(
        "tips", "Slow tips", handlers.slow, (Option("words", "Words", rest=True),)
    )
    await make_bot(registry=registry)
    ix = await fake.slash("tips", {"words": "1.3"})
    await replies(fake, ix)
    assert ix.response_type == 5
    assert ix.ack_latency is not None
    assert ix.ack_latency > interactions.FAST_BUDGET_S - 0.1  # it first tried to answer at once
    assert ix.text() == "slow answer"


async def test_slow_commands_never_miss_the_window(bot, fake: FakeDiscord) -> None:
    """Twenty 1.5 s jobs at once: every one acknowledged at once, every one answered."""
    many = [await fake.slash("slow", {"seconds": "1.5"}) for _ in range(20)]
    for ix in many:
        await replies(fake, ix)
        assert (
            ix.response_type == 5 and ix.ack_latency is not None and ix.ack_latency < 3.0
        )  # the window
        assert ix.text() == "slow answer"


async def test_the_fake_refuses_a_late_acknowledgement(make_bot: MakeBot) -> None:
    """The 3 s rule is real: with a 0 s window the fake answers 10062 and the adapter falls
    back to posting in the channel."""
    async with FakeDiscord(ack_window=0.0) as strict:
        adapter = await make_bot(on=strict)
        ix = await strict.slash("help")
        ix.expect_ack = False
        await strict.wait_for(lambda: strict.channel_messages.get(int(ix.payload["channel_id"])))
        assert ix.late() and not ix.callbacks
        (posted,) = strict.channel_messages[int(ix.payload["channel_id"])]
        assert "/status" in posted.content
        await adapter.stop()  # while its server is still there


async def test_embed_replies_stay_within_embed_limits(bot, fake: FakeDiscord, core) -> None:
    ix = await fake.slash("platforms", {})
    await replies(fake, ix)
    for m in ix.messages:
        for e in m.embeds:
            assert len(e.get("description") or "") <= 4096
            assert len(e.get("title") or "") <= 256
    assert not ix.rejected


def test_custom_ids_fit_discord() -> None:
    button = views.RerunButton(2**64 - 1, "f" * 12)
    assert len(button.custom_id) <= 100
    assert re.fullmatch(views.RERUN_TEMPLATE, button.custom_id)
