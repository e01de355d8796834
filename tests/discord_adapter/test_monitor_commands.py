"""The real monitor-backed commands (/status, /report, /subscribe, /subscriptions) through
Discord, with the real outage monitor cut off from the network: every status source and
control URL points at a closed port on 127.0.0.1, so nothing leaves the host.

/status waits for an on-the-spot check (several seconds when the sources fail) and must
therefore be deferred: the answer comes after Discord's 3 s window, the acknowledgement
long before it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.adapters.discord import DiscordAdapter
from bot.core.app import Core
from bot.monitor import history
from bot.monitor.service import MonitorService
from bot.monitor.settings import MonitorSettings
from bot.store import transaction
from tests.discord_adapter.conftest import MakeBot, replies
from tests.fakes.discord_api import CHANNEL_ID, MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord
from tests.helpers import build_registry

DEAD = "http://127.0.0.1:9/"
ADMIN = MEMBER_PERMISSIONS | MANAGE_GUILD


@pytest.fixture
async def monitored(make_bot: MakeBot, core: Core) -> AsyncIterator[DiscordAdapter]:
    """The real outage monitor, every source pointed at a dead loopback port."""
    kb = core.ctx.knowledge

    def offline(p: Any) -> Any:
        sources = [s.model_copy(update={"url": DEAD}) for s in p.status_sources]
        return p.model_copy(update={"status_sources": sources})

    platforms = {pid: offline(p) for pid, p in kb.platforms.items()}
    core.ctx.knowledge = dataclasses.replace(kb, platforms=platforms)
    adapter = await make_bot(registry=build_registry())
    settings = MonitorSettings(control_urls=(DEAD,), trust_env=False, background=False)
    monitor = MonitorService(core.ctx.store, platforms, settings)
    core.ctx.services["monitor"] = monitor
    yield adapter
    await adapter.stop()
    await monitor.aclose()


async def test_status_is_deferred_and_answered_after_the_window(
    monitored, fake: FakeDiscord
) -> None:
    ix = await fake.slash("status", {"platform": "colab"})
    await replies(fake, ix)
    assert ix.response_type == 5
    assert ix.ack_latency is not None and ix.ack_latency < 3.0  # the window
    answered_after = ix.messages[0].at - ix.dispatched_at
    assert "Google Colab" in ix.plain()
    assert "not configured" not in ix.plain()
    # the on-the-spot check took its time: without the defer this would have failed
    assert answered_after > 1.0


async def test_status_chart_is_a_deferred_image(monitored, fake: FakeDiscord, core) -> None:
    now = time.time()

    def seed(db: Any) -> None:
        with transaction(db):
            for i in range(1, 30):
                history.record(db, "colab", now - i * 300, "up", 80.0)

    await core.ctx.store.call(seed)
    ix = await fake.slash("status", {"platform": "colab", "chart": "24h"})
    await replies(fake, ix)
    assert ix.response_type == 5
    (msg,) = ix.messages
    ((name, png),) = msg.files
    assert name.endswith(".png") and png.startswith(b"\x89PNG")
    assert "last 24 h" in msg.plain()


async def test_subscribe_report_and_subscriptions(monitored, fake: FakeDiscord) -> None:
    refused = await fake.slash("subscribe", {"platforms": "colab"})
    await replies(fake, refused)
    assert "Only an admin" in refused.plain() and refused.messages[0].ephemeral

    ix = await fake.slash("subscribe", {"platforms": "colab"}, permissions=ADMIN)
    await replies(fake, ix)
    assert "now gets outage and recovery alerts for Google Colab" in ix.plain()

    ix = await fake.slash("subscriptions")
    await replies(fake, ix)
    assert "Google Colab" in ix.plain()

    ix = await fake.slash("report", {"platform": "colab", "what": "cannot connect"})
    await replies(fake, ix)
    assert "counted" in ix.plain()

    ix = await fake.slash("unsubscribe", {"platforms": "colab"}, permissions=ADMIN)
    await replies(fake, ix)
    assert "not configured" not in ix.plain()


async def test_an_alert_to_a_deleted_channel_unsubscribes_it(
    monitored: DiscordAdapter, fake: FakeDiscord, core: Core, caplog
) -> None:
    alerts = pytest.importorskip("bot.core.alerts")
    models = pytest.importorskip("bot.monitor.alerts")
    ix = await fake.slash("subscribe", {"platforms": "colab"}, permissions=ADMIN)
    await replies(fake, ix)
    monitor = core.ctx.services["monitor"]

    def alert(n: int) -> Any:
        return models.OutboundAlert(
            n,
            "discord",
            str(CHANNEL_ID),
            "colab",
            "down",
            "down",
            "Colab is down @everyone",
            ("12 reports in 10 min",),
            0.0,
        )

    assert await alerts.send_one(monitor, monitored, alert(1)) is True
    (sent,) = fake.channel_messages[CHANNEL_ID]
    assert "Colab is down" in sent.plain() and sent.pings() == []

    fake.gone(CHANNEL_ID, 404)
    assert await alerts.send_one(monitor, monitored, alert(2)) is False
    assert "unsubscribing" in caplog.text
    ix = await fake.slash("subscriptions")
    await replies(fake, ix)
    assert "no alerts" in ix.plain()
