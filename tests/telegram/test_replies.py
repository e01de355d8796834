"""What an answer looks like on Telegram: long replies, photos, albums, files, fallbacks, edits."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot.adapters.telegram import Limits
from bot.adapters.telegram.outbound import Where
from bot.adapters.telegram.text import html_to_plain
from bot.core.app import Core
from tests.fakes.telegram_api import Call, parse_html, utf16
from tests.telegram.conftest import Launch
from tests.telegram.handlers import CROWD, GATE, png

pytestmark = pytest.mark.asyncio(loop_scope="module")
FAST = Limits(chat_burst=50)  # these tests send many messages to one chat


async def test_long_reply_is_split_into_valid_messages(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    bot.send("/long 350", chat_id=1)  # ~11,000 characters of <pre> output
    calls = await bot.wait_sent(3, 1)
    texts = [c.params["text"] for c in calls]
    assert all(c.method == "sendMessage" and c.ok for c in calls)
    assert len(texts) == 3
    for t in texts:
        assert utf16(t) <= 4096
        parse_html(t)  # valid Telegram HTML: every <pre> closed and reopened
    shown = "\n".join(parse_html(t) for t in texts)
    numbers = [int(line[5:10]) for line in shown.splitlines() if line.startswith("line ")]
    assert numbers == list(range(350))  # nothing lost, nothing reordered
    assert "<&>" in shown  # escaped, then shown as typed


async def test_very_long_reply_becomes_a_file(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    bot.send("/long 3000", chat_id=2)
    calls = await bot.wait_sent(2, 2)
    assert [c.method for c in calls] == ["sendMessage", "sendDocument"]
    doc = calls[1].files["document"]
    assert doc.filename == "reply.txt"
    assert b"line 02999" in doc.data
    assert "reply.txt" in calls[0].result["text"]


async def test_photo_reply(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    bot.send("/photo 1", chat_id=3)
    calls = await bot.wait_sent(2, 3)
    assert [c.method for c in calls] == ["sendMessage", "sendPhoto"]
    upload = calls[1].files["photo"]
    assert upload.data == png(seed=0) and upload.filename == "plot0.png"
    assert utf16(calls[1].params["caption"]) <= 1024  # a 2000-character caption, cut
    assert calls[1].params["caption"].endswith("…")
    actions = [c.params["action"] for c in bot.calls_of("sendChatAction", chat_id=3)]
    assert actions == ["upload_photo"]


async def test_several_photos_go_as_albums(launch: Launch, test_core: Core) -> None:
    _, bot = await launch(limits=FAST)
    bot.send("/photo 12", chat_id=4)
    calls = await bot.wait_sent(3, 4)
    assert [c.method for c in calls] == ["sendMessage", "sendMediaGroup", "sendMediaGroup"]
    first, second = calls[1], calls[2]
    assert len(first.params["media"]) == 10 and len(second.params["media"]) == 2
    sent = [first.files[m["media"].removeprefix("attach://")].data for m in first.params["media"]]
    assert sent == [png(seed=i) for i in range(10)]
    assert [m["caption"] for m in second.params["media"]] == ["plot 10", "plot 11"]


async def test_file_reply(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    bot.send("/doc", chat_id=5)
    calls = await bot.wait_sent(2, 5)
    assert [c.method for c in calls] == ["sendMessage", "sendDocument"]
    assert calls[1].files["document"].filename == "table.csv"
    assert calls[1].files["document"].data.startswith(b"a,b\n1,2\n")
    assert calls[1].params["caption"] == "a table"
    assert calls[1].result["document"]["file_name"] == "table.csv"


async def test_refused_photo_is_sent_as_a_file(launch: Launch, test_core: Core) -> None:
    _, bot = await launch()
    bot.fail("sendPhoto", code=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
    bot.send("/photo 1", chat_id=6)
    calls = await bot.wait_sent(2, 6)
    assert calls[1].method == "sendDocument"
    assert calls[1].files["document"].data == png(seed=0)


async def test_refused_html_is_resent_as_plain_text(launch: Launch) -> None:
    _, bot = await launch()
    bot.fail(
        "sendMessage",
        code=400,
        description='Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 3',
    )
    bot.send("/status azure", chat_id=7)
    calls = await bot.wait_sent(1, 7)
    refused = bot.calls_of("sendMessage", chat_id=7, ok=False)
    assert len(refused) == 1 and refused[0].params["parse_mode"] == "HTML"
    plain = calls[0].params
    assert "parse_mode" not in plain
    assert plain["text"] == html_to_plain(refused[0].params["text"])
    assert "2021-01-15" in plain["text"] and "<b>" not in plain["text"]


async def test_malformed_html_is_refused_by_the_fake_and_still_delivered(launch: Launch) -> None:
    adapter, bot = await launch()
    markup = "<b>bold <i>both</b> &amp; <a href='https://x.org'>x</a>"
    sent = await adapter.outbound.send_text(8, markup, Where())
    assert sent[0].text == "bold both & x (https://x.org)"
    refused = bot.calls_of("sendMessage", chat_id=8, ok=False)
    assert refused and "can't parse entities" in (refused[0].error or "")


async def test_typing_while_a_command_runs(launch: Launch, test_core: Core) -> None:
    GATE.reset()
    _, bot = await launch(typing_after_s=0.0)
    bot.send("/slow", chat_id=9)
    await bot.wait_calls("sendChatAction", 1, chat_id=9)
    assert not bot.sent(9)  # still running
    GATE.release.set()
    calls = await bot.wait_sent(1, 9)
    assert "slow done" in calls[0].result["text"]
    action = bot.calls_of("sendChatAction", chat_id=9)[0]
    assert action.params["action"] == "typing" and action.at <= calls[0].at


async def test_fast_commands_send_no_chat_action(launch: Launch) -> None:
    _, bot = await launch(typing_after_s=5.0)
    bot.send("/help", chat_id=10)
    await bot.wait_sent(1, 10)
    assert not bot.calls_of("sendChatAction", chat_id=10)


async def test_edit_reruns_and_edits_the_answer(launch: Launch, test_core: Core) -> None:
    _, bot = await launch(limits=FAST)
    msg = bot.send("/echo one", chat_id=11)
    first = (await bot.wait_sent(1, 11))[0]
    assert "echo: one" in first.result["text"]
    bot.edit(msg, "/echo two")
    edits = await bot.wait_calls("editMessageText", 1, chat_id=11)
    assert edits[0].params["message_id"] == first.result["message_id"]
    assert "echo: two" in edits[0].result["text"]
    bot.edit(msg, "/echo two")  # the same answer again: "not modified" is fine
    await bot.wait_for(lambda b: len(b.calls_of("editMessageText", ok=None)) == 2)
    assert "not modified" in (bot.calls_of("editMessageText", ok=False)[0].error or "")
    bot.edit(msg, "/photo 1")  # now with a picture: text edited, photo sent
    await bot.wait_sent(2, 11)
    assert bot.sent(11)[1].method == "sendPhoto"
    bot.edit(msg, "/echo three")  # and back: the photo is deleted
    await bot.wait_calls("deleteMessage", 1, chat_id=11)
    assert (
        bot.calls_of("deleteMessage")[0].params["message_id"]
        == bot.sent(11)[1].result["message_id"]
    )
    assert len(bot.calls_of("sendMessage", chat_id=11)) == 1  # never a second text answer


async def test_edits_after_the_window_are_ignored(launch: Launch, test_core: Core) -> None:
    _, bot = await launch(edit_window_s=0.0)
    msg = bot.send("/echo one", chat_id=12)
    await bot.wait_sent(1, 12)
    bot.edit(msg, "/echo two")
    bot.send("/echo sentinel", chat_id=12)
    await bot.wait_sent(2, 12)
    assert not bot.calls_of("editMessageText", ok=None)
    assert "sentinel" in bot.sent(12)[1].result["text"]


async def test_a_failing_send_is_retried_and_the_bot_carries_on(
    launch: Launch, caplog: pytest.LogCaptureFixture
) -> None:
    _, bot = await launch(network_retries=0)
    bot.fail("sendMessage", code=500, description="Internal Server Error", chat_id=13)
    with caplog.at_level(logging.WARNING, logger="nbhelp.delivery"):
        bot.send("/help", chat_id=13)
        await bot.wait_calls("sendMessage", 1, chat_id=13)
        bot.send("/status azure", chat_id=13)
        sent = await bot.wait_sent(2, 13)
    first, second = sent[0].result["text"], sent[1].result["text"]
    assert "/alternatives" in first and "2021-01-15" not in first  # the failed /help: not lost
    assert "2021-01-15" in second  # then /status azure's answer, in order
    assert len(bot.calls_of("sendMessage", chat_id=13, ok=False)) == 1
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 1
    assert len(retried[0].getMessage().split()[1].rstrip(":")) == 8  # "error <id>: …"


@pytest.mark.slow
async def test_run_text_photo_reply_and_edit(launch: Launch, core: Core) -> None:
    """/run end to end (when the kernel pool's /run is registered): output, a plot, a reply."""
    kernels = core.ctx.kernels()
    assert kernels is not None
    await kernels.start()
    try:
        _, bot = await launch(limits=FAST)
        msg = bot.send("/run print(6 * 7)", chat_id=51)
        first = (await bot.wait_sent(1, 51, within=60))[0]
        assert "42" in first.result["text"]
        bot.edit(msg, "/run print(6 * 8)")  # fixing the code re-runs it in place
        edit = (await bot.wait_calls("editMessageText", 1, chat_id=51, within=60))[0]
        assert "48" in (edit.result or {}).get("text", "") and len(bot.sent(51)) == 1
        code = bot.message("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
        bot.send("/run", chat_id=52, reply_to=code)
        await bot.wait_for(lambda b: b.calls_of("sendPhoto", chat_id=52), within=90)
        assert bot.calls_of("sendPhoto", chat_id=52)[0].files["photo"].data[:4] == b"\x89PNG"
    finally:
        await kernels.aclose()  # type: ignore[attr-defined]


async def test_in_a_group_a_plot_and_its_short_output_are_one_message(
    launch: Launch, test_core: Core
) -> None:
    CROWD.reset()
    _, bot = await launch()
    kw: dict[str, Any] = {"chat_id": -1009, "chat_type": "supergroup"}
    asked = bot.send("/work plot", user_id=77, first_name="Esi", **kw)
    call: Call = (await bot.wait_sent(1, -1009))[0]
    assert call.method == "sendPhoto"  # one message of the group's budget, not two
    assert call.params["parse_mode"] == "HTML" and "out-77" in call.params["caption"]
    assert call.files["photo"].data == png(16, 12, seed=2)
    rp = call.params["reply_parameters"]
    rp = json.loads(rp) if isinstance(rp, str) else rp
    assert rp["message_id"] == asked["message_id"]
    # a caption too long for a photo: the text and the photo go separately, nothing cut
    bot.send("/photo 1", **kw)
    calls = await bot.wait_sent(3, -1009)
    assert [c.method for c in calls[1:]] == ["sendMessage", "sendPhoto"]
