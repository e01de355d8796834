"""Discord and the outbox: fifty /run in one channel acknowledged in time and answered by
follow-up; each interaction recorded before it is acknowledged; after a restart an answer goes
by the interaction's token while it is valid (15 minutes), past that in the channel."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bot.adapters.discord import DiscordAdapter
from bot.core.app import Core
from bot.settings import Settings
from bot.wiring import build_core
from tests.discord_adapter import handlers
from tests.discord_adapter.conftest import (
    WAIT_S,
    check_rules,
    discord_settings,
    registry_for_tests,
    replies,
)
from tests.fakes.discord_api import CHANNEL_ID, FakeDiscord


async def test_fifty_runs_in_one_channel_are_all_acknowledged_and_answered(
    bot: DiscordAdapter, fake: FakeDiscord, settings: Settings
) -> None:
    asked = [
        await fake.slash("run", {"code": f"print({1000 + i})"}, user_id=5000 + i, user_name=f"s{i}")
        for i in range(50)
    ]
    for ix in asked:
        await replies(fake, ix)
    for i, ix in enumerate(asked):
        assert ix.deferred and ix.ack_latency is not None and ix.ack_latency < 3.0
        assert [m.via for m in ix.messages] == ["followup"]
        assert f"print({1000 + i})" in ix.text() and f"ran for s{i}" in ix.text().lower()
    with sqlite3.connect(settings.db) as db:  # each recorded, with what a restart needs
        rows = db.execute("SELECT key, state, request FROM delivery_inbound").fetchall()
    assert {r[0] for r in rows} == {str(ix.id) for ix in asked}
    assert all(r[1] == "answered" for r in rows)
    assert all('"token": "tok' in r[2] and '"application_id"' in r[2] for r in rows)


async def test_each_interaction_is_recorded_before_it_is_acknowledged(
    bot: DiscordAdapter, fake: FakeDiscord, settings: Settings
) -> None:
    seen: dict[int, list[tuple[str, str]]] = {}

    def look(ix: object) -> None:  # what the database holds when Discord hears back
        iid = ix.id  # type: ignore[attr-defined]
        with sqlite3.connect(settings.db) as db:
            seen[iid] = db.execute(
                "SELECT key, request FROM delivery_inbound WHERE key = ?", [str(iid)]
            ).fetchall()

    fake.on_callback = look
    asked = [await fake.slash("help"), await fake.slash("slow", {"seconds": "0.1"})]
    for ix in asked:
        await replies(fake, ix)
    for ix in asked:
        ((key, raw),) = seen[ix.id]
        assert key == str(ix.id) and ix.token in raw  # the token is kept for a restart
    assert asked[0].response_type == 4 and asked[1].response_type == 5


async def _restart(
    core: Core, settings: Settings, fake: FakeDiscord, *, age_s: float = 0.0
) -> tuple[FakeDiscord, DiscordAdapter, Core]:
    """Ask /held, stop the bot while it is held (cut short), start a new bot on the same
    database; ``age_s`` makes the interaction that much older meanwhile."""
    handlers.HOLD = handlers.Hold()
    core.use_commands(registry_for_tests())
    core.ctx.factories.clear()
    first = DiscordAdapter(core, discord_settings(fake), stop_grace_s=0.2)
    await first.start()
    await fake.wait_ready(WAIT_S)
    ix = await fake.slash("held", {}, user_name="ama")
    await asyncio.wait_for(handlers.HOLD.started.wait(), WAIT_S)
    await fake.wait_for(lambda: ix.callbacks)  # acknowledged: "thinking…"
    await first.stop()  # the answer was cut short
    assert not ix.messages
    fake.age(ix, age_s)
    handlers.HOLD.go.set()
    second_core = build_core(settings, registry_for_tests())
    second_core.ctx.factories.clear()
    second = DiscordAdapter(second_core, discord_settings(fake))
    await second.start()
    fake.ix = ix  # type: ignore[attr-defined]
    return fake, second, second_core


async def test_after_a_restart_the_answer_goes_by_token_while_it_is_valid(
    core: Core, settings: Settings
) -> None:
    async with FakeDiscord() as fake:
        fake, second, second_core = await _restart(core, settings, fake, age_s=5 * 60)
        ix = fake.ix  # type: ignore[attr-defined]
        try:
            await replies(fake, ix)
            (answer,) = ix.messages
            assert answer.via == "followup" and answer.content == "held answer for Ama"
            assert not fake.channel_messages
        finally:
            await second.stop()
            await second_core.aclose()
        check_rules(fake)


async def test_after_fifteen_minutes_the_answer_goes_in_the_channel(
    core: Core, settings: Settings
) -> None:
    async with FakeDiscord() as fake:
        fake, second, second_core = await _restart(core, settings, fake, age_s=16 * 60)
        ix = fake.ix  # type: ignore[attr-defined]
        try:
            await fake.wait_for(lambda: fake.channel_messages.get(CHANNEL_ID), WAIT_S)
            (posted,) = fake.channel_messages[CHANNEL_ID]
            assert posted.content == "For Ama:\nheld answer for Ama"  # named, not pinged
            assert posted.allowed_mentions == {"parse": []}
            assert not ix.messages
        finally:
            await second.stop()
            await second_core.aclose()


@pytest.mark.parametrize("status", [401, 404])
async def test_a_dead_token_is_answered_in_the_channel(
    bot: DiscordAdapter, fake: FakeDiscord, status: int
) -> None:
    """Discord answers 404 while a token is unknown, 401 50027 once it expired: either way
    the answer still arrives, in the channel."""
    handlers.HOLD = handlers.Hold()
    ix = await fake.slash("held", {}, user_name="kofi")
    await asyncio.wait_for(handlers.HOLD.started.wait(), WAIT_S)
    await fake.wait_for(lambda: ix.callbacks)
    if status == 401:
        fake.age(ix, 16 * 60)
    else:
        ix.token = "forgotten"  # the fake no longer knows the token
    handlers.HOLD.go.set()
    await fake.wait_for(lambda: fake.channel_messages.get(CHANNEL_ID), WAIT_S)
    assert fake.channel_messages[CHANNEL_ID][0].content.startswith("For Kofi:")
