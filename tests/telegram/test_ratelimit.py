"""The outbound rate limiter on a virtual clock: limits, retry_after, order, give-up."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram.error import RetryAfter

from bot.adapters.telegram.ratelimit import Limits, RateLimiter, is_group


class Clock:
    """Virtual time: ``sleep`` moves the clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def limiter(limits: Limits | None = None) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(limits, clock=clock, sleep=clock.sleep), clock


async def send(rl: RateLimiter, chat: Any, log: list[tuple[float, Any]], **data: Any) -> None:
    async def callback(*_: Any, **__: Any) -> bool:
        log.append((rl.clock(), chat))
        return True

    await rl.process_request(callback, (), {}, "sendMessage", {"chat_id": chat, **data}, None)


def max_in_window(times: list[float], period: float) -> int:
    return max((sum(1 for u in times if t <= u < t + period) for t in times), default=0)


async def test_private_chat_bursts_then_one_a_second() -> None:
    rl, _ = limiter()
    log: list[tuple[float, Any]] = []
    for _ in range(7):
        await send(rl, 5, log)
    times = [t for t, _ in log]
    assert times[:4] == [0.0] * 4  # a reply of a few parts goes out at once
    gaps = [b - a for a, b in itertools.pairwise(times[3:])]
    assert all(0.99 <= g <= 1.01 for g in gaps)


async def test_group_twenty_a_minute() -> None:
    rl, _ = limiter(Limits(chat_burst=100, chat_rate=100))
    log: list[tuple[float, Any]] = []
    for _ in range(45):
        await send(rl, -1001, log)
    times = [t for t, _ in log]
    assert max_in_window(times, 60.0) == 20
    assert times[19] < 1 and 60 <= times[20] < 61 and 120 <= times[40] < 121


async def test_thirty_a_second_overall() -> None:
    rl, _ = limiter()
    log: list[tuple[float, Any]] = []
    await asyncio.gather(*(send(rl, chat, log) for chat in range(1, 101)))
    times = sorted(t for t, _ in log)
    assert len(times) == 100
    assert max_in_window(times, 1.0) == 30
    assert 3.0 <= times[-1] < 4.0


async def test_album_costs_one_per_photo() -> None:
    rl, _ = limiter()
    log: list[tuple[float, Any]] = []
    await send(rl, 7, log, media=list(range(10)))
    await send(rl, 7, log)
    assert log[1][0] >= 7.0  # ten photos overdraw the bucket of four: wait it back


async def test_retry_after_pauses_the_chat_and_retries() -> None:
    rl, clock = limiter()
    attempts: list[float] = []

    async def flaky(*_: Any, **__: Any) -> str:
        attempts.append(clock())
        if len(attempts) < 3:
            raise RetryAfter(2)
        return "sent"

    result = await rl.process_request(flaky, (), {}, "sendMessage", {"chat_id": 9}, None)
    assert result == "sent"
    assert attempts[1] - attempts[0] >= 2 and attempts[2] - attempts[1] >= 2
    assert rl.retries == 2


async def test_retry_after_in_one_chat_barely_delays_others() -> None:
    rl, _ = limiter()
    rl.pause(1, 30)
    log: list[tuple[float, Any]] = []
    await send(rl, 2, log)
    assert log[0][0] <= 1.01  # only the short global back-off
    await send(rl, 1, log)
    assert log[1][0] >= 30


async def test_gives_up_after_max_retries_or_a_huge_retry_after() -> None:
    rl, _ = limiter(Limits(max_retries=2))
    calls = 0

    async def always_429(*_: Any, **__: Any) -> None:
        nonlocal calls
        calls += 1
        raise RetryAfter(1)

    with pytest.raises(RetryAfter):
        await rl.process_request(always_429, (), {}, "sendMessage", {"chat_id": 1}, None)
    assert calls == 3

    async def huge(*_: Any, **__: Any) -> None:
        raise RetryAfter(3600)

    with pytest.raises(RetryAfter):
        await rl.process_request(huge, (), {}, "sendMessage", {"chat_id": 2}, None)


async def test_order_per_chat_is_kept_through_retries() -> None:
    rl, _ = limiter()
    delivered: list[int] = []
    failed_once: set[int] = set()

    def make(n: int) -> Any:
        async def cb(*_: Any, **__: Any) -> None:
            if n % 3 == 0 and n not in failed_once:
                failed_once.add(n)
                raise RetryAfter(1)
            delivered.append(n)

        return cb

    await asyncio.gather(
        *(
            rl.process_request(make(n), (), {}, "sendMessage", {"chat_id": 4}, None)
            for n in range(12)
        )
    )
    assert delivered == list(range(12))


async def test_other_methods_are_not_budgeted_and_chat_actions_not_retried() -> None:
    rl, clock = limiter()
    calls = 0

    async def ok(*_: Any, **__: Any) -> bool:
        nonlocal calls
        calls += 1
        return True

    for _ in range(50):
        await rl.process_request(ok, (), {}, "getChatMember", {"chat_id": 1, "user_id": 2}, None)
    assert clock.now == 0 and calls == 50

    async def action_429(*_: Any, **__: Any) -> None:
        raise RetryAfter(5)

    with pytest.raises(RetryAfter):
        await rl.process_request(action_429, (), {}, "sendChatAction", {"chat_id": 1}, None)
    assert clock.now == 0


def test_group_ids() -> None:
    assert is_group(-100123) and is_group("-5") and is_group("@channel")
    assert not is_group(42) and not is_group("42")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 3, -10, -11]), min_size=1, max_size=80))
def test_any_sequence_stays_within_every_limit(chats: list[int]) -> None:
    limits = Limits(chat_burst=3, group_count=5, group_period=10.0, global_count=4)
    rl, _ = limiter(limits)
    log: list[tuple[float, Any]] = []

    async def run() -> None:
        for chat in chats:
            await send(rl, chat, log)

    asyncio.run(run())
    assert len(log) == len(chats)
    assert max_in_window([t for t, _ in log], 1.0) <= 4
    for chat in set(chats):
        times = [t for t, c in log if c == chat]
        for i, start in enumerate(times):  # token bucket: at most burst + rate * span
            for j in range(i, len(times)):
                assert j - i + 1 <= 3 + (times[j] - start) * 1.0 + 1e-6
        if chat < 0:
            assert max_in_window(times, 10.0) <= 5


async def test_idle_chats_are_forgotten_but_busy_ones_kept() -> None:
    rl, clock = limiter()
    rl.MAX_CHATS = 3  # type: ignore[misc]
    gate = asyncio.Event()

    async def held(*_: Any, **__: Any) -> bool:
        await gate.wait()
        return True

    busy = asyncio.create_task(
        rl.process_request(held, (), {}, "sendMessage", {"chat_id": 1}, None)
    )
    await asyncio.sleep(0)
    log: list[tuple[float, Any]] = []
    for chat in (2, 3):
        await send(rl, chat, log)
    clock.now += 100  # everyone's budget is full again
    await send(rl, 4, log)  # a fourth chat: idle states are dropped, the busy one stays
    assert "1" in rl._chats and "2" not in rl._chats and "3" not in rl._chats
    gate.set()
    assert await busy is True
