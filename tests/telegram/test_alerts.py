"""Outage alerts through the rate limiter: a broadcast under 429s loses nothing."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from bot.adapters.telegram import Limits
from bot.core.alerts import drain
from bot.core.contract import ChatGone
from bot.core.models import Image, Reply, bold, para
from tests.fakes.telegram_api import Failure
from tests.telegram.conftest import Launch
from tests.telegram.handlers import png

pytestmark = pytest.mark.asyncio(loop_scope="module")


def alert(n: int, chat: int) -> Reply:
    return Reply.of(para(bold("Colab is down"), f" — alert {n} for chat {chat}"), tone="warn")


async def test_broadcast_to_50_chats_under_429s_loses_nothing(launch: Launch) -> None:
    adapter, bot = await launch()
    chats = list(range(2001, 2051))
    several = set(chats[::5])  # ten chats get three alerts, queued at once: order must hold
    for chat in (2001, 2017, 2031, 2044):
        bot.fail("sendMessage", chat_id=chat, retry_after=1)  # per-chat flood control
    bot.fail("sendMessage", times=2, retry_after=1)  # and two for whoever comes first
    started = time.monotonic()
    tasks = []
    for chat in chats:
        for n in (1, 2, 3) if chat in several else (1,):
            tasks.append(asyncio.create_task(adapter.send_alert(str(chat), alert(n, chat))))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - started
    assert not [r for r in results if isinstance(r, BaseException)]
    for chat in chats:
        texts = [c.result["text"] for c in bot.sent(chat)]
        expected = (1, 2, 3) if chat in several else (1,)
        assert texts == [f"Colab is down — alert {n} for chat {chat}" for n in expected], chat
    refused = bot.calls_of("sendMessage", ok=False)
    assert len(refused) == 6 and all(c.status == 429 for c in refused)
    for r in refused:  # each retry waited for retry_after
        retry = next(c for c in bot.sent(r.chat_id) if c.at > r.at)
        assert retry.at - r.at >= 0.95
    ok = sorted(c.at for c in bot.sent())
    assert len(ok) == 70
    # Telegram's 30 messages a second overall: 70 messages cannot arrive in a burst
    # (arrival times: the window is halved to leave slack for jitter on a loaded machine)
    assert max(sum(1 for t in ok if s <= t < s + 0.5) for s in ok) <= 30
    assert elapsed > 70 / 30 - 1  # the limiter waited (no upper bound: a loaded machine is slow)


async def test_group_alerts_honour_twenty_a_minute(launch: Launch) -> None:
    limits = Limits(group_count=3, group_period=1.0, chat_burst=10)  # the same rule, scaled
    adapter, bot = await launch(limits=limits)
    await asyncio.gather(*(adapter.send_alert("-300", alert(n, -300)) for n in range(6)))
    times = [c.at for c in bot.sent(-300)]
    assert len(times) == 6
    assert times[3] - times[0] >= 0.95 and times[5] - times[2] >= 0.95


async def test_alert_with_a_plot(launch: Launch) -> None:
    adapter, bot = await launch()
    reply = Reply(blocks=(para("Kaggle is degraded"),), images=(Image(png(), "uptime.png"),))
    await adapter.send_alert("2100", reply)
    assert [c.method for c in bot.sent(2100)] == ["sendMessage", "sendPhoto"]


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (403, "Forbidden: bot was kicked from the group chat"),
        (403, "Forbidden: bot was blocked by the user"),
        (400, "Bad Request: chat not found"),
    ],
)
async def test_chat_gone(launch: Launch, code: int, description: str) -> None:
    adapter, bot = await launch()
    bot.set_gone(-400, code, description)
    with pytest.raises(ChatGone, match="(?i)" + description.split(": ", 1)[1]):
        await adapter.send_alert("-400", alert(1, -400))
    await adapter.send_alert("2200", alert(1, 2200))  # other chats still get theirs
    assert len(bot.sent(2200)) == 1


async def test_other_errors_are_not_chat_gone(launch: Launch) -> None:
    adapter, bot = await launch()
    bot.fail("sendMessage", code=429, retry_after=600)  # longer than the limiter will wait
    with pytest.raises(Exception) as info:
        await adapter.send_alert("2300", alert(1, 2300))
    assert not isinstance(info.value, ChatGone)
    assert type(info.value).__name__ == "RetryAfter"


async def test_migrated_group_gets_the_alert_at_its_new_id(launch: Launch) -> None:
    adapter, bot = await launch()
    bot.failures.append(
        Failure(
            "sendMessage",
            1,
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": -1009999},
            -500,
        )
    )
    monitor = adapter.core.ctx.service("monitor")
    await monitor.subscribe("telegram", "-500", ["colab"])
    await adapter.send_alert("-500", alert(1, -500))
    assert len(bot.sent(-1009999)) == 1
    assert (await monitor.subscriptions("telegram", "-500")).empty  # the subscription moved with it
    assert (await monitor.subscriptions("telegram", "-1009999")).platforms == {"colab"}


class _Monitor:
    """Just enough of the outage monitor for bot.core.alerts: an outbox and its outcomes."""

    def __init__(self, alerts: list[SimpleNamespace]) -> None:
        self.alerts = alerts
        self.sent: list[int] = []
        self.gone: list[str] = []

    async def pending(self, adapter: str) -> list[SimpleNamespace]:
        return [a for a in self.alerts if a.id not in self.sent and a.chat_id not in self.gone]

    async def mark_sent(self, alert_id: int) -> None:
        self.sent.append(alert_id)

    async def mark_failed(self, alert_id: int, error: str) -> None:
        raise AssertionError(f"alert {alert_id} failed: {error}")

    async def chat_gone(self, adapter: str, chat_id: str, why: str) -> int:
        self.gone.append(chat_id)
        return 1


async def test_core_alert_delivery_through_the_adapter(launch: Launch) -> None:
    """bot.core.alerts drains the outbox through send_alert: 429s retried, gone chats dropped."""
    adapter, bot = await launch()
    chats = [str(c) for c in range(3001, 3051)]
    outbox = [
        SimpleNamespace(
            id=i,
            chat_id=chat,
            platform="colab",
            status="down",
            text="Google Colab is down",
            evidence=("probe: timeout", "3 reports in 10 min"),
        )
        for i, chat in enumerate(chats)
    ]
    monitor = _Monitor(outbox)
    bot.fail("sendMessage", chat_id=3020, retry_after=1)
    bot.set_gone(3007)
    sent = await drain(monitor, adapter)  # type: ignore[arg-type]
    assert sent == 49 and monitor.gone == ["3007"]
    assert len(bot.calls_of("sendMessage", chat_id=3020, ok=None)) == 2  # a 429, then sent
    for chat in chats:
        texts = bot.texts(int(chat))
        assert len(texts) == (0 if chat == "3007" else 1)
        assert all("Google Colab is down" in t and "/unsubscribe" in t for t in texts)
