"""The chat scheduler's decisions, as pure functions of a chat's state and a clock.

For each chat: which replies go next (by value: quick answers, alerts, /run answers, then the
progress message), when (the chat's budget), and whether several go as one combined message
(only when the backlog is larger than what the budget lets out now). Nothing here sleeps or
sends; :mod:`bot.delivery.dispatch` acts on the decisions, and tests drive them with a fake
clock.

**Pacing.** A chat with a hard budget (``count`` messages in any ``period`` seconds; a
Telegram group: 20 a minute) gets a token bucket that refills evenly: ``burst`` tokens,
refilled at ``(count - burst - reserve)`` a period. /run answers need a whole token; quick
answers and alerts may dip ``reserve`` tokens below zero, so they go out at once even while
/run answers use the budget; the progress message needs a spare token on top. In any period
that keeps a chat within ``count`` messages (``burst + reserve + refill``), and spreads /run
answers evenly instead of bursting twenty and then going quiet for a minute. The adapter's
own rate limiter stays the hard guard (and honours ``retry_after``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bot.delivery.models import LANES, Batch, ChatBudget, Lane, Parcel, QueueView
from bot.delivery.settings import DeliverySettings

BURST = 2.0
PROGRESS = "progress"


class Pacer:
    """A token bucket that keeps one chat under its per-minute budget (see the module)."""

    def __init__(
        self, count: int, period_s: float, reserve: float, now: float, burst: float = BURST
    ) -> None:
        self.capacity = max(1.0, min(burst, count - 1))
        self.reserve = max(0.0, min(reserve, count - self.capacity - 1))
        self.rate = max(count - self.capacity - self.reserve, 1.0) / period_s
        self.tokens = self.capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def need(self, lane: Lane | str) -> float:
        """Tokens the bucket must hold before a send of this lane (see the module)."""
        if lane in ("quick", "alert"):
            return 1.0 - self.reserve
        if lane == PROGRESS:
            return 2.0
        return 1.0

    def available(self, now: float, lane: Lane | str) -> int:
        """How many sends of ``lane`` could go now, one after another."""
        self._refill(now)
        return max(0, math.floor(self.tokens - self.need(lane)) + 1)

    def wait(self, now: float, lane: Lane | str) -> float:
        """Seconds until a send of ``lane`` may go (0: now)."""
        self._refill(now)
        short = self.need(lane) - self.tokens
        return 0.0 if short <= 0 else short / self.rate

    def take(self, now: float, cost: float) -> None:
        self._refill(now)
        self.tokens -= cost


@dataclass(eq=False)
class ChatState:
    """Everything the scheduler knows about one chat."""

    chat_id: str
    budget: ChatBudget
    pacer: Pacer | None = None
    lanes: dict[Lane, list[Parcel]] = field(default_factory=lambda: {lane: [] for lane in LANES})
    held: Batch | None = None  # a batch whose send failed, waiting for its retry
    held_at: float = 0.0  # monotonic: when to retry it
    progress_sig: tuple[object, ...] | None = None  # what the progress message shows now
    progress_at: float = -math.inf  # when it was last sent or edited
    progress_shown: bool = False

    @classmethod
    def of(cls, chat_id: str, budget: ChatBudget, s: DeliverySettings, now: float) -> ChatState:
        pacer = None
        if budget.count is not None:
            pacer = Pacer(budget.count, budget.period_s, s.group_reserve, now)
        return cls(chat_id, budget, pacer)

    def add(self, parcel: Parcel) -> None:
        self.lanes[parcel.lane].append(parcel)

    @property
    def empty(self) -> bool:
        return self.held is None and not any(self.lanes.values())

    def remove(self, parcels: list[Parcel]) -> None:
        gone = {id(p) for p in parcels}
        for lane in LANES:
            self.lanes[lane] = [p for p in self.lanes[lane] if id(p) not in gone]


@dataclass(frozen=True, slots=True)
class Send:
    """Send the first parcels of a lane (up to ``limit`` combined), or a held batch again."""

    lane: Lane
    parcels: list[Parcel]
    limit: int = 1
    batch: Batch | None = None


@dataclass(frozen=True, slots=True)
class ShowProgress:
    clear: bool = False  # nothing to show any more: remove the message


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float | None  # None: until something new arrives


Decision = Send | ShowProgress | Wait


def decide(
    st: ChatState, view: QueueView | None, now: float, s: DeliverySettings, *, closing: bool = False
) -> Decision:
    """What this chat does next (see the module docstring)."""
    wakes: list[float] = []
    held_lane = st.held.parcels[0].lane if st.held is not None else None
    for lane in LANES:
        if held_lane == lane and st.held_at > now:
            # a failed send holds its lane and the ones after it (the chat's order is kept)
            wakes.append(st.held_at - now)
            break
        held_ready = held_lane == lane
        ready = [p for p in st.lanes[lane] if p.next_at <= now]
        wakes += [p.next_at - now for p in st.lanes[lane] if p.next_at > now]
        if not ready and not held_ready:
            continue
        wait = st.pacer.wait(now, lane) if st.pacer is not None else 0.0
        if wait > 0:
            return Wait(min([wait, *wakes]))
        if held_ready and st.held is not None:
            return Send(lane, st.held.parcels, len(st.held.parcels), st.held)
        limit = 1
        if st.budget.combine and len(ready) > 1 and s.combine_max > 1:
            now_ok = st.pacer.available(now, lane) if st.pacer is not None else len(ready)
            if len(ready) > max(1, now_ok):
                limit = min(len(ready), s.combine_max)
        return Send(lane, ready[:limit], limit)
    if not closing:
        progress = _progress(st, view, now, s, wakes)
        if progress is not None:
            return progress
    positive = [w for w in wakes if w > 0]
    return Wait(min(positive) if positive else None)


def _progress(
    st: ChatState, view: QueueView | None, now: float, s: DeliverySettings, wakes: list[float]
) -> ShowProgress | None:
    if view is None or not view.entries:
        return ShowProgress(clear=True) if st.progress_shown else None
    if not st.progress_shown and not view.visible(now, s.progress_after_s):
        pending = [e.since + s.progress_after_s - now for e in view.waiting]
        wakes += [w for w in pending if w > 0]
        return None
    if st.progress_shown and view.signature() == st.progress_sig:
        return None
    due = st.progress_at + s.progress_every_s - now
    if due > 0:
        wakes.append(due)
        return None
    wait = st.pacer.wait(now, PROGRESS) if st.pacer is not None else 0.0
    if wait > 0:
        wakes.append(wait)
        return None
    return ShowProgress()


def retry_delay(attempts: int, s: DeliverySettings) -> float:
    """The wait before the next try after ``attempts`` failures (doubling, capped)."""
    return float(min(s.retry_max_s, s.retry_initial_s * 2 ** max(0, attempts - 1)))


def give_up(parcel: Parcel, wall_now: float, delay: float, s: DeliverySettings) -> bool:
    """True when the next retry would fall past ``retry_for_s`` after the reply was made."""
    return not parcel.retry or wall_now + delay - parcel.created_at > s.retry_for_s
