"""Fixtures: the fake status feeds, a store seeded through the monitor, the web server on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

import bot.migrations  # noqa: F401  (registers every table)
from bot import migrations
from bot.metrics import Metrics
from bot.monitor.settings import MonitorSettings
from bot.store import Store
from bot.web.app import WebServer
from bot.web.data import StoreStatusData
from bot.web.health import Readiness
from bot.web.settings import WebSettings
from tests.fakes.status_server import T0, ThreadedStatusServer
from tests.monitor.helpers import Clock
from tests.web.helpers import Seeded, seed


@pytest.fixture(scope="session")
def fake() -> Iterator[ThreadedStatusServer]:
    with ThreadedStatusServer(hang_s=30) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "web.db")
    s.migrate(migrations.steps())
    yield s
    s.close()


@pytest.fixture
def mon_settings(fake: ThreadedStatusServer) -> MonitorSettings:
    return MonitorSettings(
        timeout_s=1.0,
        retry_delays_s=(0.0, 0.0),
        trust_env=False,
        control_urls=(fake.url("/http/ok"),),
        control_timeout_s=1.0,
        jitter_s=0.0,
        background=False,
    )


@pytest.fixture
async def seeded(
    fake: ThreadedStatusServer,
    store: Store,
    mon_settings: MonitorSettings,
    clock: Clock,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Seeded]:
    tag = "w" + str(abs(hash(request.node.nodeid)))
    s = await seed(fake, store, mon_settings, clock, tag)
    yield s
    await s.monitor.aclose()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(host="127.0.0.1", port=0, cache_s=0)


@pytest.fixture
async def server(
    seeded: Seeded, web_settings: WebSettings, metrics: Metrics
) -> AsyncIterator[WebServer]:
    data = StoreStatusData(seeded.store, seeded.platforms, seeded.settings, clock=seeded.clock)
    readiness = Readiness(data, clock=seeded.clock, sweep_max_age_s=900)
    srv = WebServer(web_settings, data, metrics=metrics, readiness=readiness, clock=seeded.clock)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http(server: WebServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session
