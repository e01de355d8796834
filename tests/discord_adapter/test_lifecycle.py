"""Alerts under rate limits, gone channels, gateway drops, start and stop."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from bot.adapters.discord import DiscordAdapter
from bot.core.contract import AdapterRefused, ChatGone
from bot.core.contract import ChatAdapter as Adapter
from bot.core.models import Reply, para
from bot.web.health import adapter_check
from tests.discord_adapter.conftest import MakeBot, discord_settings, replies
from tests.fakes.discord_api import FakeDiscord

BASE_CHANNEL = 1500000000000000000


def alert(n: int) -> Reply:
    return Reply.of(para(f"Colab is down (alert {n}) @everyone"), title="Colab down", tone="error")


async def test_is_an_adapter(bot) -> None:
    assert isinstance(bot, Adapter) and bot.name == "discord"


async def test_broadcast_under_429s_loses_nothing(bot, fake: FakeDiscord) -> None:
    channels = [BASE_CHANNEL + i for i in range(30)]
    fake.rate_limit(20, retry_after=0.02)  # any channel
    fake.rate_limit(1, retry_after=0.05, is_global=True)
    fake.rate_limit(7, retry_after=0.01, channel_id=channels[3])  # beyond discord.py's 5 tries
    await asyncio.gather(*(bot.send_alert(str(c), alert(i)) for i, c in enumerate(channels)))
    assert sum(1 for _, status, _ in fake.rejected_messages if status == 429) == 28
    for i, c in enumerate(channels):
        (sent,) = fake.channel_messages[c]  # exactly one each: none lost, none doubled
        (embed,) = sent.embeds
        assert embed["title"] == "Colab down" and f"alert {i}" in embed["description"]
        assert embed["color"] == 0xED4245
        assert sent.allowed_mentions == {"parse": []} and sent.pings() == []


@pytest.mark.parametrize("status", [404, 403])
async def test_a_gone_channel_raises_chat_gone(bot, fake: FakeDiscord, status, caplog) -> None:
    fake.gone(BASE_CHANNEL + 99, status)
    with pytest.raises(ChatGone):
        await bot.send_alert(str(BASE_CHANNEL + 99), alert(1))
    assert "unsubscribing" in caplog.text
    with pytest.raises(ChatGone):
        await bot.send_alert("not-a-channel", alert(2))


async def test_gateway_drop_resumes_and_keeps_answering(bot, fake: FakeDiscord) -> None:
    session = fake.session
    await fake.drop(4000)
    await fake.wait_for(lambda: fake.resumes and fake.ready)
    assert fake.session is session and len(fake.identifies) == 1  # RESUME, not re-IDENTIFY
    assert fake.resumes[0]["session_id"] == session.id
    ix = await fake.slash("help")
    await replies(fake, ix)
    assert "/status" in ix.text()


async def test_an_interaction_sent_during_a_drop_is_replayed_and_answered(
    bot, fake: FakeDiscord
) -> None:
    await fake.drop(1001)
    ix = await fake.slash("help")  # queued while the bot is away, replayed on RESUME
    await replies(fake, ix)
    assert fake.resumes and ix.ack_latency is not None and ix.ack_latency < 3.0


async def test_clean_shutdown_finishes_in_flight_answers(bot, fake: FakeDiscord) -> None:
    ix = await fake.slash("slow", {"seconds": "0.5"})
    await fake.wait_for(lambda: ix.callbacks)  # deferred, now working
    await bot.stop()
    assert ix.text() == "slow answer"  # finished before the connection closed
    assert fake.client_closes == [1000]  # a clean close of the gateway
    assert bot.gateway.client is not None and bot.gateway.client.is_closed()
    await bot.stop()  # idempotent
    late = [t for t in asyncio.all_tasks() if "discord" in (t.get_name() or "")]
    assert not [t for t in late if not t.done()]


async def test_start_with_a_bad_token_fails_clearly(core, settings) -> None:
    async with FakeDiscord() as fake:
        s = discord_settings(fake)
        s = s.model_copy(update={"token": SecretStr("wrong")})
        adapter = DiscordAdapter(core, s)
        with pytest.raises(AdapterRefused, match="rejected the bot token"):
            await adapter.start()
        assert adapter.connected is False
        await adapter.stop()
        assert not fake.identifies


async def test_two_bots_in_sequence_reuse_the_fake(make_bot: MakeBot, fake: FakeDiscord) -> None:
    first = await make_bot()
    await first.stop()
    await make_bot()
    assert fake.sync_count == 2 and len(fake.identifies) == 2
    ix = await fake.slash("help")
    await replies(fake, ix)


@pytest.mark.slow
async def test_an_invalid_session_is_identified_again(bot, fake: FakeDiscord) -> None:
    """RESUME refused → discord.py IDENTIFYs anew (after its own 5 s identify pause)."""
    fake.forget_sessions()
    await fake.drop(4000)
    await fake.wait_for(lambda: len(fake.identifies) == 2 and fake.ready, within=15)
    assert len(fake.resumes) == 1
    ix = await fake.slash("help")
    await replies(fake, ix)
    assert "/status" in ix.text()


async def test_connected_from_ready_until_stopped(
    make_bot: MakeBot, core, fake: FakeDiscord
) -> None:
    unstarted = DiscordAdapter(core, discord_settings(fake))
    assert unstarted.connected is False and not adapter_check(unstarted).ok
    adapter = await make_bot()  # start() returns once the gateway is READY
    assert adapter.connected is True and adapter_check(adapter).ok
    await adapter.stop()
    assert adapter.connected is False and not adapter_check(adapter).ok


async def test_interactions_while_stopping_get_a_notice(bot, fake: FakeDiscord) -> None:
    bot.interactions.stopping = True
    ix = await fake.slash("status", {"platform": "colab"})
    await replies(fake, ix)
    assert "restarting" in ix.text() and ix.messages[0].ephemeral
    bot.interactions.stopping = False
