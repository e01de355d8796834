"""Outbound rate limiting for the Bot API, honouring ``retry_after``.

Telegram's documented limits: about one message a second in a chat (short bursts are
tolerated), at most 20 messages a minute in a group, about 30 messages a second overall. A 429
answer carries ``retry_after``: the chat is paused for that long and the request retried, so a
broadcast to many chats loses nothing. Every request to one chat goes through that chat's lock
(FIFO), so messages to one chat keep their order, retries included.

The limiter is a python-telegram-bot ``BaseRateLimiter``: the ``ExtBot`` passes every request
through :meth:`RateLimiter.process_request` (``getUpdates`` excepted), so command replies and
alerts share one budget. Its clock and sleep are injectable for tests.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger("nbhelp.telegram.ratelimit")
T = TypeVar("T")

#: Methods that post or change a message: these count against the flood limits.
MESSAGE_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "sendAnimation",
        "sendAudio",
        "sendVideo",
        "sendVoice",
        "sendSticker",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
    }
)
#: Best effort: never retried, never queued behind messages.
UNRETRIED_METHODS = frozenset({"sendChatAction"})


@dataclass(frozen=True, slots=True)
class Limits:
    chat_rate: float = 1.0  # messages a second in one chat, on average ...
    chat_burst: int = 4  # ... with a short burst allowed (a reply of a few parts at once)
    group_count: int = 20  # messages in one group ...
    group_period: float = 60.0  # ... per this many seconds (sliding window)
    global_count: int = 30  # messages overall ...
    global_period: float = 1.0  # ... per this many seconds (sliding window)
    max_retries: int = 6  # 429 answers retried per request before giving up
    max_retry_after: float = 120.0  # a longer wait is not waited for: RetryAfter is raised
    global_pause_cap: float = 1.0  # a 429 also pauses every chat, for at most this long

    @classmethod
    def unlimited(cls) -> Limits:
        """No throttling (benchmarks of the adapter's own cost); 429s are still honoured."""
        big = 10**9
        return cls(chat_rate=big, chat_burst=big, group_count=big, global_count=big)


def retry_seconds(exc: RetryAfter) -> float:
    value = getattr(exc, "_retry_after", None)
    if value is None:  # pragma: no cover - older library versions
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def is_group(chat_id: object) -> bool:
    """Negative ids are groups, supergroups and channels; ``@name`` ids are channels/groups."""
    if isinstance(chat_id, str):
        try:
            return int(chat_id) < 0
        except ValueError:
            return chat_id.startswith("@")
    return isinstance(chat_id, int) and chat_id < 0


class TokenBucket:
    """``rate`` tokens a second up to ``capacity``; may go negative to pay for a big send."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.stamp = capacity, now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float, cost: float) -> float:
        self._refill(now)
        need = min(cost, self.capacity)  # a send bigger than the burst waits for a full bucket
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, now: float, cost: float) -> None:
        self._refill(now)
        self.tokens -= cost

    def idle(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


class SlidingWindow:
    """At most ``count`` units in any ``period`` seconds, as the server sees them.

    A unit is stamped when booked and stamped again when its request completes: Telegram
    received it somewhere in between, so measuring the window from the later stamp keeps the
    limit even when requests are delayed on their way (a loaded event loop, a slow network).
    """

    def __init__(self, count: int, period: float) -> None:
        self.count, self.period = count, period
        self.stamps: collections.deque[list[float]] = collections.deque()

    def _live(self, now: float) -> list[float]:
        horizon = now - self.period
        while self.stamps and self.stamps[0][0] <= horizon:
            self.stamps.popleft()
        if len(self.stamps) > self.count * 2:  # completions out of order: drop expired ones
            self.stamps = collections.deque(s for s in self.stamps if s[0] > horizon)
        return sorted(s[0] for s in self.stamps if s[0] > horizon)

    def wait(self, now: float, cost: int) -> float:
        live = self._live(now)
        excess = len(live) + min(cost, self.count) - self.count
        if excess <= 0:
            return 0.0
        return live[excess - 1] + self.period - now

    def take(self, now: float, cost: int) -> list[list[float]]:
        self._live(now)
        stamps = [[now] for _ in range(cost)]
        self.stamps.extend(stamps)
        return stamps

    def idle(self, now: float) -> bool:
        return not self._live(now)


def settle(stamps: list[list[float]], now: float) -> None:
    """Re-stamp booked units at the completion of their request."""
    for stamp in stamps:
        stamp[0] = max(stamp[0], now)


class _Chat:
    __slots__ = ("bucket", "lock", "paused_until", "users", "window")

    def __init__(self, limits: Limits, group: bool, now: float) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # requests holding or waiting for the lock: never forget those
        self.bucket = TokenBucket(limits.chat_rate, limits.chat_burst, now)
        self.window = SlidingWindow(limits.group_count, limits.group_period) if group else None
        self.paused_until = 0.0


class RateLimiter(BaseRateLimiter[None]):
    """Per-chat, per-group and global limits plus ``retry_after`` pauses, with retries."""

    MAX_CHATS = 4096  # idle chat states are forgotten beyond this many

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self.clock, self.sleep = clock, sleep
        self._chats: dict[str, _Chat] = {}
        self._global = SlidingWindow(self.limits.global_count, self.limits.global_period)
        self._global_paused_until = 0.0
        self.retries = 0  # 429 answers seen and retried (for logs, tests and benchmarks)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    # -- the budget ------------------------------------------------------------------------

    def _chat(self, chat_id: object) -> _Chat:
        key = str(chat_id)
        state = self._chats.get(key)
        if state is None:
            if len(self._chats) >= self.MAX_CHATS:
                self._forget_idle()
            state = self._chats[key] = _Chat(self.limits, is_group(chat_id), self.clock())
        return state

    def _forget_idle(self) -> None:
        now = self.clock()
        for key, st in list(self._chats.items()):
            if (
                not st.users
                and st.bucket.idle(now)
                and (st.window is None or st.window.idle(now))
                and st.paused_until <= now
            ):
                del self._chats[key]

    def wait_time(self, chat_id: object, cost: int = 1) -> float:
        """Seconds until ``cost`` messages may go to this chat (0: now)."""
        now = self.clock()
        st = self._chat(chat_id)
        waits = [
            st.paused_until - now,
            self._global_paused_until - now,
            st.bucket.wait(now, cost),
            self._global.wait(now, cost),
        ]
        if st.window is not None:
            waits.append(st.window.wait(now, cost))
        return max(0.0, *waits)

    async def acquire(self, chat_id: object, cost: int = 1) -> list[list[float]]:
        """Wait until the limits allow ``cost`` messages to this chat, and book them; the
        booking is :func:`settle`d when the request completes."""
        while True:
            wait = self.wait_time(chat_id, cost)
            if wait <= 0:
                break
            await self.sleep(wait + 1e-3)
        now = self.clock()
        st = self._chat(chat_id)
        st.bucket.take(now, cost)
        booked = self._global.take(now, cost)
        if st.window is not None:
            booked += st.window.take(now, cost)
        return booked

    def pause(self, chat_id: object, seconds: float) -> None:
        now = self.clock()
        st = self._chat(chat_id)
        st.paused_until = max(st.paused_until, now + seconds)
        cap = min(seconds, self.limits.global_pause_cap)
        self._global_paused_until = max(self._global_paused_until, now + cap)

    # -- python-telegram-bot's hook --------------------------------------------------------

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if endpoint in UNRETRIED_METHODS:
            return await callback(*args, **kwargs)
        if endpoint not in MESSAGE_METHODS or chat_id is None:
            return await self._retrying(endpoint, None, lambda: callback(*args, **kwargs))
        cost = len(data.get("media") or ()) or 1
        chat = self._chat(chat_id)
        chat.users += 1
        try:
            async with chat.lock:
                return await self._retrying(
                    endpoint, chat_id, lambda: callback(*args, **kwargs), cost=cost
                )
        finally:
            chat.users -= 1

    async def _retrying(
        self,
        endpoint: str,
        chat_id: object,
        call: Callable[[], Awaitable[T]],
        cost: int = 1,
    ) -> T:
        attempt = 0
        while True:
            booked: list[list[float]] = []
            if chat_id is not None:
                booked = await self.acquire(chat_id, cost)
            else:
                wait = self._global_paused_until - self.clock()
                if wait > 0:
                    await self.sleep(wait)
            try:
                return await call()
            except RetryAfter as exc:
                seconds = retry_seconds(exc)
                if attempt >= self.limits.max_retries or seconds > self.limits.max_retry_after:
                    log.warning(
                        "%s to chat %s: 429 retry after %.0f s, giving up after %d tries",
                        endpoint,
                        chat_id,
                        seconds,
                        attempt + 1,
                    )
                    raise
                attempt += 1
                self.retries += 1
                log.info(
                    "%s to chat %s: 429, retrying in %.1f s (try %d)",
                    endpoint,
                    chat_id,
                    seconds,
                    attempt + 1,
                )
                if chat_id is not None:
                    self.pause(chat_id, seconds)
                else:
                    await self.sleep(seconds)
            finally:
                settle(booked, self.clock())
