"""The chat scheduler's decisions, as pure functions of a chat's state and a clock.

For each chat: which replies go next (by value: quick answers, alerts, /run answers, then the
progress message), when (the chat's budget), and whether several go as one combined message
(only when the backlog is larger than what the budget lets out now). Nothing here sleeps or
sends; :mod:`bot.delivery.dispatch` acts on the decisions, and tests drive them with a fake
clock.

**Pacing.** A chat with a hard budget (``count`` messages in any ``period`` seconds; a
Telegram group: 20 a minute) is paced by an exact sliding window of what was sent:
quick answers and alerts go whenever the window has room; /run answers and the progress
message leave ``reserve`` messages of it to them, so a quick answer never waits behind a /run
backlog; and /run answers are spread, at most ``BURST`` in any ``BURST * gap`` seconds
(``gap = period / (count - reserve)``), instead of twenty at once and then a silent minute.
What becomes ready in between waits for the next slot and goes out combined with the others
(one message per interval, as many answers as fit). The adapter's own rate limiter stays the
hard guard (and honours ``retry_after``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from bot.delivery.models import LANES, Batch, ChatBudget, Lane, Parcel, QueueView
from bot.delivery.settings import DeliverySettings

BURST = 2
PROGRESS = "progress"


class Pacer:
    """Keeps one chat within its budget: an exact window of the messages sent (see the module).
    Times are the scheduler's monotonic clock; a send is stamped when the platform confirmed
    it, a little after the platform counted it, so the window errs on the safe side."""

    def __init__(
        self, count: int, period_s: float, reserve: float, now: float, burst: int = BURST
    ) -> None:
        self.count = max(1, count)
        self.period = period_s
        self.reserve = int(max(0, min(reserve, self.count - 1)))
        self.gap = period_s / max(1, self.count - self.reserve)
        self.burst = max(1, burst)
        self.sent: deque[float] = deque()  # one stamp per message, oldest first
        self.runs: deque[float] = deque()  # stamps of /run-lane sends (the last ``burst``)

    @property
    def budget_key(self) -> tuple[int, float, int]:
        return (self.count, self.period, self.reserve)

    def idle(self, now: float) -> bool:
        """Nothing it sent counts any more: forgetting it changes no decision."""
        self._expire(now)
        return not self.sent and all(t <= now - self.burst * self.gap for t in self.runs)

    def _expire(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.period:
            self.sent.popleft()

    def _cap(self, lane: Lane | str) -> int:
        """How many messages the window may hold before a send of this lane."""
        if lane in ("quick", "alert"):
            return self.count
        if lane == PROGRESS:
            return max(1, self.count - self.reserve - 1)  # a spare on top of the /run share
        return self.count - self.reserve

    def _room_in(self, now: float, cap: int) -> float:
        """Seconds until the window holds fewer than ``cap`` messages."""
        over = len(self.sent) - cap
        if over < 0:
            return 0.0
        return max(0.0, self.sent[over] + self.period - now)

    def wait(self, now: float, lane: Lane | str) -> float:
        """Seconds until a send of ``lane`` may go (0: now)."""
        self._expire(now)
        wait = self._room_in(now, self._cap(lane))
        if lane == "run" and len(self.runs) >= self.burst:
            wait = max(wait, self.runs[-self.burst] + self.burst * self.gap - now)
        return max(0.0, wait)

    def available(self, now: float, lane: Lane | str) -> int:
        """How many sends of ``lane`` could go now, one after another."""
        if self.wait(now, lane) > 0:
            return 0
        room = max(0, self._cap(lane) - len(self.sent))
        if lane == "run":
            recent = sum(1 for t in self.runs if t > now - self.burst * self.gap)
            room = min(room, max(0, self.burst - recent))
        return room

    def take(self, now: float, cost: float, lane: Lane | str = "quick") -> None:
        """Record a send of ``cost`` messages (0: an edit, which the platform does not count)."""
        self._expire(now)
        for _ in range(math.ceil(cost)):
            self.sent.append(now)
        if lane == "run" and cost > 0:
            self.runs.append(now)
            while len(self.runs) > self.burst:
                self.runs.popleft()


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
