"""Fixtures for the monitor: one fake status server per test session (per xdist worker),
a pinned clock, a real SQLite store with the monitor's migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import bot.monitor.migrations  # noqa: F401  (registers the monitor's tables)
from bot import migrations
from bot.monitor.service import MonitorService
from bot.monitor.settings import MonitorSettings
from bot.store import Store
from tests.fakes.status_server import T0, ThreadedStatusServer
from tests.monitor.helpers import Clock


@pytest.fixture(scope="session")
def fake() -> Iterator[ThreadedStatusServer]:
    with ThreadedStatusServer(hang_s=30) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "monitor.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    s.migrate(migrations.steps())
    yield s
    s.close()


@pytest.fixture
def mon_settings(fake: ThreadedStatusServer) -> MonitorSettings:
    # Generous timeouts: a loopback answer on a loaded machine must never count as a failure
    # (the "slow" answer of the tests, 2.5 s, stays under them too).
    return MonitorSettings(
        timeout_s=6.0,
        retry_delays_s=(0.0, 0.0),
        trust_env=False,
        control_urls=(fake.url("/http/ok"),),
        control_timeout_s=6.0,
        jitter_s=0.0,
    )


@pytest.fixture
async def service_factory(
    store: Store, mon_settings: MonitorSettings, clock: Clock
) -> AsyncIterator[object]:
    made: list[MonitorService] = []

    def make(platforms, settings: MonitorSettings | None = None, **kw) -> MonitorService:  # type: ignore[no-untyped-def]
        svc = MonitorService(store, platforms, settings or mon_settings, clock=clock, **kw)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        await svc.aclose()
