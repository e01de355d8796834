"""History rollup and pruning; the pure alert decision, property-style."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.monitor import history
from bot.monitor.alerts import AlertState, category, decide, render
from bot.monitor.settings import MonitorSettings
from bot.store import Store, transaction

S = MonitorSettings()
DAY = 86400
T = 1_760_000_000.0 // DAY * DAY  # midnight UTC


def test_rollup_uptime_latency_and_prune(store: Store) -> None:
    with transaction(store.db) as db:
        for i in range(48 * 12):  # 48 h of checks every 5 min; down 10:00-11:00 each day
            at = T + i * 300
            hour = int(at // 3600 % 24)
            status = "down" if hour == 10 else "up"
            history.record(db, "colab", at, status, None if status == "down" else 100.0 + hour)
    now = T + 48 * 3600
    with transaction(store.db) as db:
        up = history.uptimes(db, now, ["colab"])["colab"]
        assert up.h24 == up.d7 == up.d30 == 23 / 24  # only whole days of data so far
        assert up.avg_latency_ms is not None and 100 < up.avg_latency_ms < 124
        assert len(history.series(db, "colab", now, "24h")) == 24 * 12
        week = history.series(db, "colab", now, "7d")
        assert len(week) == 48 and {p.status for p in week} == {"up", "down"}
        n_raw = db.execute("SELECT count(*) FROM monitor_checks").fetchone()[0]
        assert history.prune(db, now, S) == n_raw - 24 * 12
        assert db.execute("SELECT count(*) FROM monitor_checks").fetchone()[0] == 24 * 12
        # a month later the hourly buckets are gone, the daily ones remain for the year
        history.prune(db, now + 31 * DAY, S)
        sizes = dict(
            db.execute("SELECT size, count(*) FROM monitor_buckets GROUP BY size").fetchall()
        )
        assert sizes == {"d": 2}


def test_incidents_open_escalate_close(store: Store) -> None:
    with transaction(store.db) as db:
        assert history.track_incident(db, "x", "degraded", 10, since=5, title="slow") is None
        history.track_incident(db, "x", "down", 20, since=5, title="gone")
        inc = history.open_incident(db, "x")
        assert inc is not None and (inc.status, inc.title, inc.started_at) == ("down", "slow", 5)
        closed = history.track_incident(db, "x", "up", 65, since=65, title="")
        assert closed is not None and closed.duration(100) == 60
        assert history.open_incident(db, "x") is None
        assert history.last_incidents(db, ["x"])["x"].ended_at == 65


statuses = st.sampled_from(["up", "degraded", "down", "maintenance", "unknown"])


@settings(max_examples=300)
@given(st.lists(st.tuples(statuses, st.integers(1, 4 * 3600)), max_size=60))
def test_alert_properties(seq):  # type: ignore[no-untyped-def]
    state, at = AlertState(), 0.0
    last_reminder: float | None = None
    for status, dt in seq:
        at += dt
        before = state
        state, event = decide(state, status, at, S, since=at)
        if status == "unknown":
            assert event is None and state == before  # unknown never alerts nor counts
            continue
        if event is None:
            continue
        if event.kind == "reminder":
            assert category(status) == "problem"
            assert before.last_alert_at is not None and at - before.last_alert_at >= S.reminder_s
            assert last_reminder is None or at - last_reminder >= S.reminder_s
            last_reminder = at
        else:
            assert not state.flapping
            changed = category(status) != category(before.last_alerted)
            escalated = status == "down" and before.last_alerted == "degraded"
            assert changed or escalated
            assert not (before.last_alerted is None and status == "up")
            last_reminder = None
        assert render(event, "X", ["a line"])  # renders for every event


def test_flapping_suppression_then_settle() -> None:
    s = MonitorSettings(flap_threshold=3, flap_window_s=600)
    st_, kinds = AlertState(), []
    for i, status in enumerate(["up", "down", "up", "down", "up", "down"]):
        st_, ev = decide(st_, status, i * 60.0, s)  # type: ignore[arg-type]
        kinds.append(ev.kind if ev else None)
    assert kinds == [None, "down", "recovered", None, None, None]
    st_, ev = decide(st_, "down", 2000.0, s)  # window passed: settled down, alerted once more
    assert ev is not None and ev.kind == "down"
