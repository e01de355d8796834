"""GPU-time budgets of the Kaggle backend: per user per UTC day, per deployment per 7 days, and
the account's own quota as Kaggle reports it (when the API offers it).

:meth:`Budgets.admit` answers how many seconds a run may use, or raises GpuBudgetExceeded with
a message that says when time comes back. Usage is read from the ledger (``kaggle_runs``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bot.kernels.errors import GpuBudgetExceeded
from bot.kernels.kaggle import ledger
from bot.kernels.kaggle.client import KaggleApiError, Quota
from bot.kernels.kaggle.settings import KaggleSettings
from bot.store import Store
from bot.text import duration

log = logging.getLogger(__name__)

DAY = 86400.0
WEEK = 7 * DAY


def utc_hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a %H:%M UTC")


class Budgets:
    def __init__(
        self,
        settings: KaggleSettings,
        store: Store,
        clock: Callable[[], float],
        fetch_quota: Callable[[], Awaitable[Quota | None]],
    ) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._fetch_quota = fetch_quota
        self._quota: tuple[float, Quota | None] | None = None

    @property
    def last_quota(self) -> Quota | None:
        return self._quota[1] if self._quota is not None else None

    async def admit(self, user_key: str, reserved_s: float) -> float:
        """Seconds of GPU time a run of ``user_key`` may use; ``reserved_s`` is what runs going
        on now may still spend of the deployment's budget."""
        s = self.settings
        now = self._clock()
        day_start = math.floor(now / DAY) * DAY  # UTC midnight
        week_start = now - WEEK

        def usage(db: Any) -> tuple[float, float, float | None]:
            return (
                ledger.used_seconds(db, day_start, user_key),
                ledger.used_seconds(db, week_start),
                ledger.oldest_charge(db, week_start),
            )

        user_used, week_used, oldest = await self.store.call(usage)
        user_left = s.user_daily_gpu_minutes * 60 - user_used
        week_left = s.weekly_gpu_hours * 3600 - week_used - reserved_s
        if user_left < s.min_run_s:
            raise GpuBudgetExceeded(
                f"You have used your {s.user_daily_gpu_minutes:g} GPU minutes for today. "
                f"They come back at 00:00 UTC (in {duration(day_start + DAY - now)}).",
                detail=f"user {user_key} used {user_used:.0f} s today",
            )
        if week_left < s.min_run_s:
            when = f" More frees up from {utc_hhmm(oldest + WEEK)}." if oldest else ""
            raise GpuBudgetExceeded(
                f"This bot's Kaggle GPU time for the week ({s.weekly_gpu_hours:g} h) is used up "
                f"or held by runs going on now.{when}",
                detail=f"deployment used {week_used:.0f} s in 7 days, {reserved_s:.0f} s reserved",
            )
        limit = min(s.wall_s, user_left, week_left)
        quota = await self.account_quota()
        if quota is not None:
            if quota.left_s < s.min_run_s:
                when = (
                    f" It refreshes {utc_hhmm(quota.refresh_at)}."
                    if quota.refresh_at is not None
                    else ""
                )
                raise GpuBudgetExceeded(
                    "The Kaggle account behind this bot has no GPU quota left this week." + when,
                    detail=f"account quota: {quota}",
                )
            limit = min(limit, quota.left_s)
        return limit

    async def account_quota(self) -> Quota | None:
        """The account's quota (cached ``quota_cache_s``); None when unknown or not checked."""
        s = self.settings
        if not s.check_account_quota:
            return None
        now = self._clock()
        if self._quota is not None and now - self._quota[0] < s.quota_cache_s:
            return self._quota[1]
        try:
            quota = await self._fetch_quota()
        except KaggleApiError as exc:
            log.info("Kaggle account quota unknown: %s", exc)
            quota = None
        self._quota = (now, quota)
        return quota
