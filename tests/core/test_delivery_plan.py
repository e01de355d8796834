"""The chat scheduler's decisions on a fake clock: order by value, budgets, combining,
progress, retries. Nothing sleeps: time is a number the tests move."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.models import Reply, para
from bot.delivery.models import Batch, ChatBudget, Lane, Parcel, QueueView, Waiting
from bot.delivery.plan import (
    ChatState,
    Pacer,
    Send,
    ShowProgress,
    Wait,
    decide,
    give_up,
    retry_delay,
)
from bot.delivery.settings import DeliverySettings

S = DeliverySettings()
GROUP = ChatBudget(20, 60.0, combine=True)  # a Telegram group
PRIVATE = ChatBudget()


def parcel(lane: Lane, n: int = 0, *, at: float = 0.0) -> Parcel:
    return Parcel(
        n + 1, "test", "c", lane, Reply.of(para(f"{lane} {n}")), who=f"p{n}", created_at=at
    )


@dataclass
class Sim:
    """Runs the decisions of one chat on virtual time: each send takes its cost from the
    budget at once (the platform answers instantly)."""

    budget: ChatBudget
    settings: DeliverySettings = S
    now: float = 0.0
    arrivals: list[tuple[float, Parcel]] = field(default_factory=list)
    sends: list[tuple[float, Lane, list[Parcel]]] = field(default_factory=list)
    st: ChatState = field(init=False)

    def __post_init__(self) -> None:
        self.st = ChatState.of("c", self.budget, self.settings, self.now)

    def arrive(self, when: float, p: Parcel) -> None:
        self.arrivals.append((when, p))
        self.arrivals.sort(key=lambda a: a[0])

    def run(self, until: float = 3600.0) -> None:
        while self.now <= until:
            while self.arrivals and self.arrivals[0][0] <= self.now:
                self.st.add(self.arrivals.pop(0)[1])
            d = decide(self.st, None, self.now, self.settings)
            if isinstance(d, Send):
                batch = d.parcels[: d.limit]
                self.st.remove(batch)
                self.sends.append((self.now, d.lane, batch))
                if self.st.pacer is not None:
                    self.st.pacer.take(self.now, 1, d.lane)
                continue
            assert isinstance(d, Wait)
            nxt = [a[0] for a in self.arrivals]
            if d.seconds is not None:
                nxt.append(self.now + d.seconds)
            if not nxt:
                return
            self.now = max(self.now + 1e-6, min(nxt))

    def when_sent(self, p: Parcel) -> float:
        return next(t for t, _, batch in self.sends if p in batch)


def most_in_window(times: list[float], period: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + period) for t in times), default=0)


def test_quick_answers_go_before_alerts_before_run_answers() -> None:
    st = ChatState.of("c", PRIVATE, S, 0.0)
    run, alert, quick = parcel("run", 1), parcel("alert", 2), parcel("quick", 3)
    for p in (run, alert, quick):  # arrival order is the reverse of their value
        st.add(p)
    order = []
    while not st.empty:
        d = decide(st, None, 0.0, S)
        assert isinstance(d, Send) and d.limit == 1  # private: never combined
        st.remove(d.parcels[:1])
        order.append(d.parcels[0])
    assert order == [quick, alert, run]


def test_a_group_keeps_its_budget_and_spreads_run_answers() -> None:
    sim = Sim(GROUP, DeliverySettings(combine_max=1))  # no combining: the pacing alone
    for i in range(50):
        sim.arrive(i * 0.2, parcel("run", i))
    sim.run()
    times = [t for t, _, _ in sim.sends]
    assert len(times) == 50
    assert most_in_window(times, 60.0) <= 20  # Telegram's 20 a minute into a group
    gap = 60 / (20 - S.group_reserve)
    pairs = [b - a for a, b in zip(times, times[2:], strict=False)]
    assert min(pairs) >= 2 * gap - 1e-6  # spread: at most two in any two gaps ...
    assert max(times[:17]) <= 17 * gap  # ... and never a silent minute while answers wait


def test_quick_answers_are_not_stuck_behind_a_run_backlog() -> None:
    sim = Sim(GROUP, DeliverySettings(combine_max=1))
    for i in range(40):
        sim.arrive(0.0, parcel("run", i))
    quick = [parcel("quick", 100 + i) for i in range(3)]
    for i, q in enumerate(quick):
        sim.arrive(30.0 + i * 5, q)
    sim.run()
    for i, q in enumerate(quick):
        assert sim.when_sent(q) - (30.0 + i * 5) < 1e-6  # at once: the reserve is theirs
    times = [t for t, _, _ in sim.sends]
    assert most_in_window(times, 60.0) <= 20


def test_answers_are_combined_only_when_the_backlog_exceeds_the_budget() -> None:
    quiet = Sim(GROUP)
    quiet.arrive(0.0, parcel("run", 1))
    quiet.arrive(10.0, parcel("run", 2))
    quiet.run()
    assert [len(b) for _, _, b in quiet.sends] == [1, 1]  # a quiet group: one each

    busy = Sim(GROUP)
    for i in range(50):
        busy.arrive(i * 0.2, parcel("run", i))  # fifty answers within ten seconds
    busy.run()
    sizes = [len(b) for _, _, b in busy.sends]
    assert sum(sizes) == 50 and max(sizes) <= S.combine_max
    assert len(sizes) <= 12  # a handful of messages instead of fifty
    done = max(t for t, _, _ in busy.sends)
    assert done <= 40.0  # every answer out within the group's budget, not 2.5 minutes
    assert most_in_window([t for t, _, _ in busy.sends], 60.0) <= 20


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.floats(0, 120), st.sampled_from(["quick", "alert", "run"])),
        min_size=1,
        max_size=80,
    )
)
def test_any_arrivals_stay_within_the_group_budget(arrivals: list[tuple[float, str]]) -> None:
    sim = Sim(GROUP)
    for i, (when, lane) in enumerate(arrivals):
        sim.arrive(when, parcel(lane, i, at=when))  # type: ignore[arg-type]
    sim.run()
    assert sum(len(b) for _, _, b in sim.sends) == len(arrivals)  # nothing lost
    assert most_in_window([t for t, _, _ in sim.sends], 60.0) <= 20


def test_pacer_window_is_exact_and_keeps_the_reserve() -> None:
    p = Pacer(6, 3.0, reserve=2, now=0.0)
    for _ in range(4):  # the /run share of the window: 6 - 2
        assert p.wait(0.0, "quick") == 0.0
        p.take(0.0, 1, "quick")
    assert p.wait(0.0, "run") == pytest.approx(3.0)  # the share is full until the window slides
    assert p.available(0.0, "quick") == 2 and p.wait(0.0, "quick") == 0.0  # the reserve
    p.take(0.0, 2, "quick")
    assert p.wait(0.0, "quick") == pytest.approx(3.0)  # the whole budget spent
    assert p.wait(1.5, "quick") == pytest.approx(1.5)
    assert p.available(3.0, "run") == 2  # a fresh window


def test_the_first_answers_of_a_quiet_group_go_at_once() -> None:
    sim = Sim(GROUP)
    sim.arrive(0.0, parcel("run", 1))
    sim.arrive(0.5, parcel("run", 2))
    sim.run()
    assert [t for t, _, _ in sim.sends] == [0.0, 0.5]  # a burst of two, not paced


def test_many_quick_answers_in_a_burst_each_go_at_once() -> None:
    sim = Sim(GROUP)
    for i in range(50):
        sim.arrive(i * 0.2, parcel("run", i))
    quick = [parcel("quick", 100 + i) for i in range(10)]
    for i, q in enumerate(quick):
        sim.arrive(i * 1.0, q)  # ten people asking /status during the workshop's burst
    sim.run()
    for i, q in enumerate(quick):
        assert sim.when_sent(q) == pytest.approx(i * 1.0)  # each alone, at once
        assert next(b for _, _, b in sim.sends if q in b) == [q]
    assert max(t for t, lane, _ in sim.sends if lane == "run") <= 30.0
    assert most_in_window([t for t, _, _ in sim.sends], 60.0) <= 20


def test_a_failed_send_holds_its_lane_but_not_quicker_ones() -> None:
    st = ChatState.of("c", PRIVATE, S, 0.0)
    failed, later, quick = parcel("run", 1), parcel("run", 2), parcel("quick", 3)
    st.held, st.held_at = Batch([failed]), 5.0
    st.add(later)
    d = decide(st, None, 1.0, S)
    assert isinstance(d, Wait) and d.seconds == pytest.approx(4.0)  # the run waits its turn
    st.add(quick)
    d = decide(st, None, 1.0, S)
    assert isinstance(d, Send) and d.parcels == [quick]  # a quick answer still goes
    st.remove([quick])
    d = decide(st, None, 5.0, S)
    assert isinstance(d, Send) and d.batch is not None and d.parcels == [failed]


def test_retries_back_off_and_stop_after_retry_for() -> None:
    s = DeliverySettings(retry_initial_s=1, retry_max_s=60, retry_for_s=600)
    assert [retry_delay(n, s) for n in (1, 2, 3, 7, 20)] == [1, 2, 4, 60, 60]
    p = parcel("run", at=1000.0)
    assert not give_up(p, 1000.0 + 500, 60, s)
    assert give_up(p, 1000.0 + 560, 60, s)
    alert = parcel("alert")
    alert.retry = False
    assert give_up(alert, 0.0, 1, s)  # alerts are retried by their own loop


def waiting(n: int, since: float = 0.0, running: int = 0) -> QueueView:
    entries = [Waiting(i, f"p{i}", i < running, since) for i in range(n)]
    return QueueView("c", tuple(entries))


def test_progress_is_shown_once_a_queue_waited_and_edited_at_most_every_few_seconds() -> None:
    s = DeliverySettings(progress_after_s=3, progress_every_s=5)
    st = ChatState.of("c", GROUP, s, 0.0)
    lone = QueueView("c", (Waiting(1, "Ama", False, 0.0),))
    assert decide(st, lone, 10.0, s) == Wait(None)  # a lone run starting its kernel: nothing
    view = waiting(5)
    d = decide(st, view, 1.0, s)
    assert isinstance(d, Wait) and d.seconds == pytest.approx(2.0)  # not before 3 s
    assert decide(st, view, 3.0, s) == ShowProgress()
    st.progress_shown, st.progress_at, st.progress_sig = True, 3.0, view.signature()
    assert decide(st, view, 4.0, s) == Wait(None)  # unchanged: nothing to edit
    changed = waiting(4, running=1)
    d = decide(st, changed, 4.0, s)
    assert isinstance(d, Wait) and d.seconds == pytest.approx(4.0)  # coalesced: 5 s apart
    assert decide(st, changed, 8.0, s) == ShowProgress()
    assert decide(st, QueueView("c"), 9.0, s) == ShowProgress(clear=True)  # queue empty


def test_progress_waits_behind_answers_and_spare_budget() -> None:
    s = DeliverySettings(progress_after_s=0, progress_every_s=1)
    st = ChatState.of("c", GROUP, s, 0.0)
    st.add(parcel("run", 1))
    d = decide(st, waiting(3), 0.0, s)
    assert isinstance(d, Send)  # the answer first
    st.remove(d.parcels)
    assert st.pacer is not None
    for _ in range(20 - s.group_reserve - 1):  # the answers spent the /run share of the window
        st.pacer.take(0.0, 1, "run")
    d = decide(st, waiting(3), 0.0, s)
    assert isinstance(d, Wait) and d.seconds is not None and d.seconds > 0
    later = 0.0 + (d.seconds or 0)
    assert decide(st, waiting(3), later, s) == ShowProgress()


def test_nothing_new_while_closing() -> None:
    st = ChatState.of("c", PRIVATE, S, 0.0)
    assert decide(st, waiting(3), 100.0, S, closing=True) == Wait(None)
    assert math.isinf(-st.progress_at)
