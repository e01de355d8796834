"""Community reports: per-person limits, distinct people and chats, a baseline with a floor."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.monitor.reports import Reports, classify
from bot.monitor.settings import MonitorSettings
from bot.store import Store, transaction

S = MonitorSettings()
WEEK = 7 * 86400
chats_st = st.lists(st.integers(0, 12), max_size=12)
base_st = st.floats(0, 20, allow_nan=False)


@settings(max_examples=300)
@given(st.integers(0, 1000), base_st)
def test_one_group_never_declares_an_outage(people, baseline):  # type: ignore[no-untyped-def]
    assert classify([people], baseline, S)[0] == "none"


@settings(max_examples=300)
@given(st.integers(0, 50), base_st)
def test_one_person_per_chat_needs_the_floor(chats, baseline):  # type: ignore[no-untyped-def]
    level, eff = classify([1] * chats, baseline, S)
    if chats < S.report_floor_possible:
        assert level == "none"
    assert eff == chats


@settings(max_examples=300)
@given(chats_st, base_st, st.integers(0, 11), st.integers(1, 5))
def test_more_people_never_lower_the_level(per_chat, baseline, idx, extra):  # type: ignore[no-untyped-def]
    order = {"none": 0, "possible": 1, "detected": 2}
    before = classify(per_chat, baseline, S)[0]
    more = [*per_chat, 0] if not per_chat else list(per_chat)
    more[idx % len(more)] += extra
    assert order[classify(more, baseline, S)[0]] >= order[before]
    more2 = [*per_chat, extra]  # a new chat joins
    assert order[classify(more2, baseline, S)[0]] >= order[before]


@settings(max_examples=300)
@given(chats_st, base_st, st.floats(0, 20, allow_nan=False))
def test_higher_baseline_never_raises_the_level(per_chat, b, delta):  # type: ignore[no-untyped-def]
    order = {"none": 0, "possible": 1, "detected": 2}
    assert order[classify(per_chat, b + delta, S)[0]] <= order[classify(per_chat, b, S)[0]]


@settings(max_examples=200)
@given(chats_st, base_st)
def test_cap_per_chat(per_chat, baseline):  # type: ignore[no-untyped-def]
    _, eff = classify(per_chat, baseline, S)
    assert eff <= S.report_chat_cap * len([n for n in per_chat if n])


def add(
    store: Store,
    r: Reports,
    now: float,
    user: str,
    chat: str,
    platform: str = "colab",
    counts: bool = True,
):  # type: ignore[no-untyped-def]
    with transaction(store.db) as db:
        return r.add(db, platform=platform, user_key=user, chat_key=chat, now=now, counts=counts)


T = 1_760_000_000.0


def test_one_report_per_person_per_platform_per_window(store: Store) -> None:
    r = Reports(S)
    assert add(store, r, T, "u1", "c1").reason == "counted"
    dup = add(store, r, T + 60, "u1", "c2")
    assert dup.reason == "duplicate" and not dup.accepted
    assert dup.retry_after_s == S.report_dedupe_s - 60
    assert add(store, r, T + 120, "u1", "c1", platform="kaggle").reason == "counted"
    assert add(store, r, T + S.report_dedupe_s + 1, "u1", "c1").reason == "counted"


def test_spam_across_platforms_is_bounded(store: Store) -> None:
    r = Reports(S)
    reasons = [add(store, r, T + i, "spammer", f"c{i}", platform=f"p{i}").reason for i in range(10)]
    assert reasons.count("counted") == S.report_user_max
    assert set(reasons[S.report_user_max :]) == {"limit"}
    with transaction(store.db) as db:
        n = db.execute("SELECT count(*) FROM monitor_reports").fetchone()[0]
    assert n == S.report_user_max


def test_known_non_outage_message_does_not_count(store: Store) -> None:
    r = Reports(S)
    out = add(store, r, T, "u1", "c1", counts=False)
    assert out.reason == "not_outage" and not out.accepted
    assert out.summary.reports == 0
    assert add(store, r, T + 1, "u1", "c1").reason == "counted"  # a real report is still allowed


def test_levels_by_people_and_chats(store: Store) -> None:
    r = Reports(S)
    for i in range(8):  # one big group: never enough alone
        add(store, r, T + i, f"g{i}", "group")
    with transaction(store.db) as db:
        s = r.summary(db, "colab", T + 10)
    assert (s.people, s.chats, s.effective, s.level) == (8, 1, 3, "none")
    add(store, r, T + 20, "x1", "other")  # a second chat: 3 + 1 >= floor 3
    with transaction(store.db) as db:
        s = r.summary(db, "colab", T + 30)
    assert s.level == "possible" and s.chats == 2
    assert "Community: 9 people in 2 chats reported problems in the last 30 min" in s.line
    for i in range(3):
        add(store, r, T + 40 + i, f"y{i}", f"chat{i}")
    with transaction(store.db) as db:
        s = r.summary(db, "colab", T + 50)
    assert s.level == "detected" and s.effective == 7
    with transaction(store.db) as db:  # the window passes
        assert r.summary(db, "colab", T + S.report_window_s + 100).level == "none"


def test_baseline_for_the_time_of_week_raises_the_bar(store: Store) -> None:
    r = Reports(S)
    for w in range(1, 5):  # every week at this time, 4 people in 4 chats report (a busy slot)
        for i in range(4):
            add(store, r, T - w * WEEK - 60 - i, f"w{w}u{i}", f"w{w}c{i}")
    with transaction(store.db) as db:
        assert r.baseline(db, "colab", T) == 4.0
    for i in range(6):
        add(store, r, T + i, f"now{i}", f"nowc{i}")
    with transaction(store.db) as db:
        s = r.summary(db, "colab", T + 10)
    assert s.baseline == 4.0 and s.effective == 6
    assert s.level == "none"  # 6 people is normal for this slot (needs 12 / 24)
    for i in range(6):  # the same six on a platform whose slot is quiet: detected
        add(store, r, T + 20 + i, f"now{i}", f"nowc{i}", platform="kaggle")
    with transaction(store.db) as db:
        assert r.summary(db, "kaggle", T + 30).level == "detected"


def test_prune_keeps_baseline_weeks(store: Store) -> None:
    r = Reports(S)
    add(store, r, T - 60 * 86400, "old", "c")
    add(store, r, T - 20 * 86400, "recent", "c")
    with transaction(store.db) as db:
        assert r.prune(db, T) == 1
