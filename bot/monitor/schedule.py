"""When each platform is checked: every ``interval_s`` (per-platform overrides), jittered so
checks spread out, skipping a platform another process (``probe``, ``ask``) checked recently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from bot.monitor.settings import MonitorSettings

log = logging.getLogger(__name__)


class Schedule:
    def __init__(
        self,
        settings: MonitorSettings,
        platforms: Sequence[str],
        *,
        sweep: Callable[[list[str]], Awaitable[object]],
        checked_at: Callable[[], Awaitable[dict[str, float]]],
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.platforms = list(platforms)
        self._sweep = sweep
        self._checked_at = checked_at
        self.clock = clock
        self.rng = rng
        self.wake = asyncio.Event()

    def jitter(self, pid: str) -> float:
        j = min(self.settings.jitter_s, self.settings.interval_for(pid) / 2)
        return self.rng.uniform(-j, j) if j > 0 else 0.0

    async def run(self) -> None:
        """Until cancelled: sweep the platforms that are due, then sleep until the next one."""
        s = self.settings
        now = self.clock()
        last = await self._checked_at()
        due = {
            pid: (last[pid] + s.interval_for(pid) if pid in last else now) + abs(self.jitter(pid))
            for pid in self.platforms
        }
        while due:
            now = self.clock()
            ready = [pid for pid, t in due.items() if t <= now]
            if ready:
                try:
                    last = await self._checked_at()  # another process may have checked
                    todo = [p for p in ready if now - last.get(p, -1e18) >= s.interval_for(p) / 2]
                    if todo:
                        await self._sweep(todo)
                except Exception:
                    log.exception("monitor sweep failed")
                for pid in ready:
                    due[pid] = self.clock() + s.interval_for(pid) + self.jitter(pid)
                continue
            delay = min(max(min(due.values()) - now, 0.01), 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            self.wake.clear()
