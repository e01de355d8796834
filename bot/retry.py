"""Retry with backoff: the one implementation the bot uses (exponential, jittered, capped).

Two shapes of the same policy: :func:`retrying` (tenacity) around a call that should be
retried until it works, and :class:`Backoff` for long-running loops (alert delivery, start-up
of a chat platform, kernel starts) that sleep between failures and reset after a success.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay
from tenacity.wait import wait_exponential_jitter


class Backoff:
    """Exponential backoff with jitter: ``initial``, ``2 x initial``, … up to ``maximum``."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 60.0,
        *,
        jitter: float = 0.2,
        rng: random.Random | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()
        self._sleep = sleep

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before the next attempt."""
        self.failures += 1
        base = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        spread = float(self._rng.uniform(-self.jitter, self.jitter))
        return max(0.0, float(base) * (1 + spread))

    async def wait(self) -> float:
        """Count a failure and sleep; return the delay slept."""
        delay = self.next_delay()
        if self._sleep is not None:
            result = self._sleep(delay)
            if asyncio.iscoroutine(result):
                await result
        else:
            await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0


def retrying(
    *,
    initial: float = 0.5,
    maximum: float = 60.0,
    give_up_after: float | None = None,
    retry_on: Callable[[BaseException], bool] = lambda exc: isinstance(exc, Exception),
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """``async for attempt in retrying(...): with attempt: await work()`` — the same policy
    as :class:`Backoff`, for one call retried until it succeeds (or ``give_up_after`` s)."""
    return AsyncRetrying(
        wait=wait_exponential_jitter(initial=initial, max=maximum, jitter=initial),
        retry=retry_if_exception(retry_on),
        stop=stop_after_delay(give_up_after) if give_up_after is not None else (lambda _: False),
        before_sleep=before_sleep,
        reraise=True,
    )
