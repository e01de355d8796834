"""The workshop minute through the real Application and a fake that enforces Telegram's flood
limits (scaled: 6 messages per 3 s in a group instead of 20 a minute, the same rule).

A burst of /run-like commands in one group: quick commands answered while the runs wait, one
edited progress message, answers combined (each part headed by its asker's name, escaped),
plots on one contact sheet, never a 429; an update is confirmed to Telegram only once it is in
the database (polling and webhook); 500s for a while lose no answer; a restart answers what
was cut short.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from bot.adapters.telegram import Limits
from bot.core.app import Core
from bot.delivery.intake import RESTARTED_RUNNING
from bot.delivery.settings import DeliverySettings
from bot.settings import Settings, StartupSettings
from bot.wiring import build_core
from tests.fakes.telegram_api import Call, FakeBot, FakeTelegram, FloodLimits, parse_html
from tests.telegram.conftest import Launch, free_port, make_registry, tg_settings
from tests.telegram.handlers import CROWD

pytestmark = pytest.mark.asyncio(loop_scope="module")
GROUP = -100_777
SCALED = Limits(chat_rate=4.0, chat_burst=4, group_count=6, group_period=3.0)
FAKE_SCALED = FloodLimits(chat_rate=4.0, chat_burst=4, group_count=6, group_period=3.0)
WAIT_S = 120.0  # a bound for "never", not a speed: a loaded machine is slow


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        db=tmp_path / "nbhelp.db",
        out_dir=tmp_path / "out",
        delivery=DeliverySettings(
            retry_initial_s=0.05, retry_max_s=0.5, progress_after_s=0.2, progress_every_s=1.0
        ),
        startup=StartupSettings(db_busy_timeout_s=0.2),
        _env_file=None,
    )


class Seen(logging.Handler):
    """Sets an event once a log record containing ``needle`` is emitted."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle, self.event = needle, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()

    async def __aenter__(self) -> Seen:
        logging.getLogger("nbhelp.telegram").addHandler(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        logging.getLogger("nbhelp.telegram").removeHandler(self)


def shown(call: Call) -> str:
    """What a reader sees of a sent or edited message (text or caption)."""
    if "text" in call.params:
        markup = str(call.params["text"])
        return parse_html(markup) if call.params.get("parse_mode") else markup
    return str(call.params.get("caption") or "")


def seen(bot: FakeBot, chat_id: int) -> str:
    calls = bot.calls_of("sendMessage", "sendPhoto", "sendDocument", chat_id=chat_id)
    return "\n".join(shown(c) for c in calls)


def answered(bot: FakeBot, chat_id: int, needles: list[str]) -> bool:
    text = seen(bot, chat_id)
    return all(n in text for n in needles)


def progress_calls(bot: FakeBot, chat_id: int) -> list[Call]:
    return [
        c
        for c in bot.calls_of("sendMessage", "editMessageText", chat_id=chat_id)
        if "queued" in shown(c)
    ]


async def test_a_workshop_burst_in_one_group(launch: Launch, test_core: Core) -> None:
    CROWD.reset(hold=True)
    _, bot = await launch(limits=SCALED, prepare=lambda b: b.enforce(FAKE_SCALED))
    students = list(range(101, 121))
    kw: dict[str, Any] = {"chat_id": GROUP, "chat_type": "supergroup"}
    asked = {}
    for u in students:
        name = "<b>@admin</b>" if u == 101 else f"Student {u}"
        asked[u] = bot.send(f"/work {u}", user_id=u, first_name=name, **kw)
    # every run waits: the group gets ONE progress message, not one per person
    await bot.wait_for(
        lambda b: any("20 runs queued" in shown(c) for c in progress_calls(b, GROUP)), WAIT_S
    )
    # quick commands are answered at once, whatever the /run backlog
    for u in (201, 202, 203):
        bot.send(f"/echo quick-{u}", user_id=u, **kw)
    await bot.wait_for(
        lambda b: answered(b, GROUP, [f"quick-{u}" for u in (201, 202, 203)]), WAIT_S
    )
    assert CROWD.started == 0  # the runs were all still waiting
    CROWD.go.set()
    needles = [f"out-{u}: {u}" for u in students]
    await bot.wait_for(lambda b: answered(b, GROUP, needles), WAIT_S)
    await bot.wait_for(lambda b: b.calls_of("deleteMessage", chat_id=GROUP), WAIT_S)

    text = seen(bot, GROUP)
    assert all(text.count(n) == 1 for n in needles)  # each answer exactly once
    answers = [c for c in bot.calls_of("sendMessage", chat_id=GROUP) if "out-" in shown(c)]
    assert len(answers) < len(students)  # the backlog was larger than the budget: combined
    combined = [c for c in answers if shown(c).count("out-") > 1]
    assert combined
    for c in combined:  # each part headed by its asker's name, replying to the first asker
        assert c.params["reply_parameters"]["message_id"] in {
            m["message_id"] for m in asked.values()
        }
        assert shown(c).count(":\n") >= shown(c).count("out-")
    markup = "\n".join(c.params["text"] for c in answers)
    assert "&lt;b&gt;@\u2060admin&lt;/b&gt;" in markup  # a name is text: escaped, never a ping
    assert "<b>@admin" not in markup
    # one progress message, edited in place, removed once the queue emptied
    sent_progress = [c for c in progress_calls(bot, GROUP) if c.method == "sendMessage"]
    assert len(sent_progress) == 1
    # the group's budget held: no 429 from Telegram, never more than 6 messages per 3 s
    assert bot.flood_refusals == 0
    assert bot.most_in_window(GROUP, 3.0) <= 6
    assert not bot.calls_of(ok=False)


def legend_of(call: Call) -> str:
    """The legend naming a contact sheet's tiles (in a caption of its own or after the
    answers' text), or "" for a photo that is not a sheet."""
    caption = str(call.params.get("caption") or "")
    if "Plots: " in caption:
        return caption.split("Plots: ", 1)[1].removesuffix("</i>")
    return caption if caption.startswith("1 ") else ""


async def test_plots_in_a_combined_answer_come_on_one_contact_sheet(
    launch: Launch, test_core: Core
) -> None:
    CROWD.reset(hold=True)
    _, bot = await launch(limits=SCALED, prepare=lambda b: b.enforce(FAKE_SCALED))
    kw: dict[str, Any] = {"chat_id": GROUP - 1, "chat_type": "supergroup"}
    students = list(range(301, 309))
    for u in students:
        bot.send(f"/work plot {u}", user_id=u, first_name=f"Ama{u}", **kw)
    await bot.wait_for(lambda b: progress_calls(b, GROUP - 1), WAIT_S)
    CROWD.go.set()
    await bot.wait_for(lambda b: answered(b, GROUP - 1, [f"out-{u}" for u in students]), WAIT_S)
    # the progress message goes last, once every answer (and its pictures) went out
    await bot.wait_for(lambda b: b.calls_of("deleteMessage", chat_id=GROUP - 1), WAIT_S)
    photos = bot.calls_of("sendPhoto", chat_id=GROUP - 1)
    assert len(photos) < len(students)  # sheets, not a photo (or album item) per person
    assert not bot.calls_of("sendMediaGroup", chat_id=GROUP - 1)
    sheet = max(photos, key=lambda c: legend_of(c).count("Ama"))
    legend = legend_of(sheet)
    assert legend.startswith("1 Ama") and " · 2 Ama" in legend
    # small outputs ride on the sheet as its caption: one message of the group's budget
    assert "out-" in sheet.params["caption"] and sheet.params.get("parse_mode") == "HTML"
    # every plot arrived: on a sheet, named in its legend, or alone under its own answer
    on_sheets = sum(legend_of(c).count("Ama") for c in photos)
    alone = [c for c in photos if not legend_of(c)]
    assert on_sheets + len(alone) == len(students)
    with PILImage.open(io.BytesIO(sheet.files["photo"].data)) as img:
        assert img.format == "PNG" and img.width >= 2 * 640  # tiles side by side
    assert bot.flood_refusals == 0


async def test_an_update_is_confirmed_only_once_recorded(
    launch: Launch, test_core: Core, settings: Settings
) -> None:
    _, bot = await launch()
    await bot.wait_calls("getUpdates", 1)
    lock = sqlite3.connect(settings.db, timeout=5)
    lock.execute("BEGIN EXCLUSIVE")  # another program holds the database
    try:
        async with Seen("cannot record update") as seen_log:
            update = bot.inject({"message": bot.message("/echo kept", chat_id=61)})
            await asyncio.wait_for(seen_log.event.wait(), WAIT_S)
        polls = bot.calls_of("getUpdates", ok=None)
        assert all(int(c.params.get("offset") or 0) <= update["update_id"] for c in polls)
        assert not bot.sent(61)
    finally:
        lock.rollback()
        lock.close()
    await bot.wait_sent(1, 61, within=WAIT_S)
    assert "echo: kept" in bot.sent(61)[0].result["text"]
    await bot.wait_for(
        lambda b: any(
            int(c.params.get("offset") or 0) > update["update_id"]
            for c in b.calls_of("getUpdates", ok=None)
        ),
        WAIT_S,
    )
    rows = (
        sqlite3.connect(settings.db)
        .execute(
            "SELECT state FROM delivery_inbound WHERE key = ?", [f"{bot.id}:{update['update_id']}"]
        )
        .fetchall()
    )
    assert rows == [("answered",)]


async def test_a_webhook_update_gets_200_only_once_recorded(
    launch: Launch, test_core: Core, settings: Settings
) -> None:
    port = free_port()
    _, bot = await launch(
        settings_update={
            "webhook_url": f"http://127.0.0.1:{port}/hook",
        }
    )
    lock = sqlite3.connect(settings.db, timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        async with Seen("cannot record update") as seen_log:
            post = asyncio.ensure_future(
                bot.deliver_webhook({"message": bot.message("/echo hooked", chat_id=62)})
            )
            await asyncio.wait_for(seen_log.event.wait(), WAIT_S)
        assert not post.done()  # Telegram has no 200 yet: it would deliver the update again
    finally:
        lock.rollback()
        lock.close()
    assert await asyncio.wait_for(post, WAIT_S) == 200
    assert "echo: hooked" in (await bot.wait_sent(1, 62, within=WAIT_S))[0].result["text"]


async def test_500s_for_a_while_during_a_burst_lose_no_answer(
    launch: Launch, test_core: Core
) -> None:
    CROWD.reset()
    _, bot = await launch(network_retries=0, limits=SCALED)
    bot.outage = {"sendMessage"}  # the Bot API fails every send for a while
    chats = list(range(701, 711))
    for chat in chats:
        bot.send(f"/work {chat}", chat_id=chat)
    bot.send("/echo in-the-group", chat_id=GROUP - 2, chat_type="supergroup", user_id=9)
    await bot.wait_for(lambda b: len(b.calls_of("sendMessage", ok=False)) >= 2 * len(chats), WAIT_S)
    assert not bot.sent()
    bot.outage = set()  # the API is back
    for chat in chats:
        calls = await bot.wait_sent(1, chat, within=WAIT_S)
        assert f"out-{chat}: {chat}" in calls[0].result["text"]
    assert "in-the-group" in (await bot.wait_sent(1, GROUP - 2, within=WAIT_S))[0].result["text"]
    assert all(len(bot.sent(chat)) == 1 for chat in chats)  # once each


async def test_a_restart_answers_what_was_cut_short(fake: FakeTelegram, settings: Settings) -> None:
    """A run that had not started is run again; one that was running is told the bot
    restarted; a quick command cut short is answered: all by the next start."""
    from tests.telegram.handlers import GATE

    bot = fake.new_bot("nbhelp_restart_bot")
    registry = make_registry()

    async def start(core: Core) -> Any:
        from bot.adapters.telegram import TelegramAdapter

        adapter = TelegramAdapter(
            core, tg_settings(fake, bot), stop_grace_s=0.2, typing_after_s=5.0
        )
        await adapter.start()
        return adapter

    CROWD.reset(hold=True)
    GATE.reset()
    first = build_core(settings, registry)
    adapter = await start(first)
    bot.send("/work queued", chat_id=81)  # waits for the crowd: not started
    bot.send("/slow", chat_id=82)  # a quick command, held mid-way
    await asyncio.wait_for(GATE.started.wait(), WAIT_S)
    await bot.wait_for(lambda b: len(b.calls_of("getUpdates", ok=None)) >= 2, WAIT_S)
    db = sqlite3.connect(settings.db)
    await bot.wait_for(
        lambda b: db.execute("SELECT count(*) FROM delivery_inbound").fetchone()[0] == 2, WAIT_S
    )
    # a third request whose code had started (recorded so by an earlier run of the bot)
    db.execute(
        "INSERT INTO delivery_inbound (adapter, key, chat_id, user_id, display_name, lane, "
        "request, state, boot, created_at, updated_at) VALUES ('telegram', 'old:1', '83', '83', "
        "'Kofi', 'run', ?, 'started', 'an-earlier-run', 0, 0)",
        [
            '{"text": "/work long", "is_private": true, "is_admin": false, "route": {"message_id": 5}}'
        ],
    )
    db.commit()
    await adapter.stop()  # SIGTERM-like: the held work is cancelled after the grace
    await first.aclose()
    assert not bot.sent(81) and not bot.sent(82)

    CROWD.reset()
    GATE.reset()
    GATE.release.set()
    second = build_core(settings, registry)
    adapter = await start(second)
    try:
        assert "out-81: queued" in (await bot.wait_sent(1, 81, within=WAIT_S))[0].result["text"]
        assert "slow done" in (await bot.wait_sent(1, 82, within=WAIT_S))[0].result["text"]
        told = (await bot.wait_sent(1, 83, within=WAIT_S))[0].result["text"]
        assert RESTARTED_RUNNING.split(",")[0] in told
        states = dict(db.execute("SELECT chat_id, state FROM delivery_inbound").fetchall())
        assert states == {"81": "answered", "82": "answered", "83": "answered"}
    finally:
        db.close()
        await adapter.stop()
        await second.aclose()
