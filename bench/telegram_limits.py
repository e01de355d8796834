"""Telegram's flood limits and a server outage, in front of one bot of the fake Bot API.

``tests/fakes/telegram_api.py`` answers every call; the workshop benchmark needs a fake that
refuses what Telegram would refuse. :class:`Enforcer` wraps one ``FakeBot``'s ``call``:

- with ``limits``: Telegram's published limits (<https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>):
  "avoid sending more than one message per second" in a chat, "no more than 20 messages per
  minute" in a group, "about 30 messages per second" overall. Beyond them: 429 ``Too Many
  Requests: retry after N`` with ``parameters.retry_after``, as Telegram answers. How far a
  chat may burst past 1/s is not published: here 5 at once (unverified). Whether edits count
  against a group's 20 a minute is not published either: here they count against the chat's
  1/s and the overall 30/s only (unverified). An album counts as one message per photo.
- ``outage(seconds)``: every call answers 500 ``Internal Server Error`` until it ends
  (``getUpdates`` included, as when the Bot API itself is down).

Refused calls are recorded in the bot's ``calls`` with their status, like the fake's own
failures, so a benchmark reads one log.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from typing import Any

from tests.fakes.telegram_api import Call, FakeBot, Upload

SENDS = {"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup"}
EDITS = {"editMessageText", "editMessageCaption", "editMessageMedia"}
CHAT_RATE = 1.0  # messages a second in one chat …
CHAT_BURST = 5  # … with this many at once (unverified)
GROUP_COUNT, GROUP_PERIOD = 20, 60.0
GLOBAL_COUNT, GLOBAL_PERIOD = 30, 1.0


def message_count(method: str, params: dict[str, Any]) -> int:
    """How many chat messages a call makes (an album makes one per item)."""
    if method == "sendMediaGroup":
        media = params.get("media")
        return len(media) if isinstance(media, list) else 1
    return 1


class Enforcer:
    def __init__(self, bot: FakeBot, *, limits: bool) -> None:
        self.bot = bot
        self.limits = limits
        self._call = bot.call
        bot.call = self.call  # type: ignore[method-assign]  # wrapping one fake's entry point
        self.down_until = 0.0
        self.refused: Counter[str] = Counter()  # 429s by the limit that refused them
        self.errors_500 = 0
        self._buckets: dict[Any, tuple[float, float]] = {}  # chat -> (tokens, stamp)
        self._groups: dict[Any, deque[float]] = {}
        self._global: deque[float] = deque()

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds

    async def call(
        self, method: str, params: dict[str, Any], files: dict[str, Upload]
    ) -> tuple[int, Any]:
        now = time.monotonic()
        if now < self.down_until:
            self.errors_500 += 1
            return await self._refuse(method, params, files, 500, "Internal Server Error")
        if self.limits and method in SENDS | EDITS:
            wait, which = self._admit(method, params, now)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                self.refused[which] += 1
                return await self._refuse(
                    method,
                    params,
                    files,
                    429,
                    f"Too Many Requests: retry after {retry}",
                    {"retry_after": retry},
                )
        return await self._call(method, params, files)

    async def _refuse(
        self,
        method: str,
        params: dict[str, Any],
        files: dict[str, Upload],
        code: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        call = Call(method, params, files, status=code, error=description)
        self.bot.calls.append(call)
        await self.bot._changed_now()
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return code, body

    def _admit(self, method: str, params: dict[str, Any], now: float) -> tuple[float, str]:
        """Seconds until the call fits every limit (0: admitted and counted), and which one."""
        chat = params.get("chat_id")
        n = message_count(method, params)
        waits: list[tuple[float, str]] = []
        tokens, stamp = self._buckets.get(chat, (float(CHAT_BURST), now))
        tokens = min(float(CHAT_BURST), tokens + (now - stamp) * CHAT_RATE)
        if tokens < n:
            waits.append(((n - tokens) / CHAT_RATE, "per chat"))
        group = self._groups.setdefault(chat, deque())
        is_group = isinstance(chat, int) and chat < 0
        if is_group and method in SENDS:
            _expire(group, now - GROUP_PERIOD)
            if len(group) + n > GROUP_COUNT:
                waits.append(
                    (group[len(group) + n - GROUP_COUNT - 1] + GROUP_PERIOD - now, "group")
                )
        _expire(self._global, now - GLOBAL_PERIOD)
        if len(self._global) + n > GLOBAL_COUNT:
            waits.append(
                (
                    self._global[len(self._global) + n - GLOBAL_COUNT - 1] + GLOBAL_PERIOD - now,
                    "overall",
                )
            )
        if waits:
            return max(waits)
        self._buckets[chat] = (tokens - n, now)
        if is_group and method in SENDS:
            group.extend([now] * n)
        self._global.extend([now] * n)
        return 0.0, ""


def _expire(window: deque[float], horizon: float) -> None:
    while window and window[0] <= horizon:
        window.popleft()
