"""Fixtures for the Kaggle backend: the fake API on loopback, a fake clock (no real waits), a
real SQLite store, and a runner factory that always closes what it made."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import migrations
from bot.kernels.kaggle import KaggleRunner, KaggleSettings
from bot.store import Store
from tests.fakes.kaggle_api import KaggleFake

T0 = 1_767_787_200.0  # 2026-01-07T12:00:00Z


class FakeClock:
    """Wall time that moves only when the code under test sleeps."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake() -> AsyncIterator[KaggleFake]:
    async with KaggleFake() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "nbhelp.db")
    s.migrate(migrations.steps())
    yield s
    s.close()


@pytest.fixture
def make_settings(fake: KaggleFake) -> Callable[..., KaggleSettings]:
    def make(**overrides: Any) -> KaggleSettings:
        base: dict[str, Any] = {
            "base_url": fake.url,
            "token": fake.token,
            "accept_risk": True,
            "retry_initial_s": 1.0,
        }
        base.update(overrides)
        return KaggleSettings(**base)

    return make


@pytest.fixture
async def make_runner(
    store: Store, clock: FakeClock, make_settings: Callable[..., KaggleSettings]
) -> AsyncIterator[Callable[..., KaggleRunner]]:
    made: list[KaggleRunner] = []

    def make(settings: KaggleSettings | None = None, **overrides: Any) -> KaggleRunner:
        runner = KaggleRunner(
            settings or make_settings(**overrides), store, clock=clock, sleep=clock.sleep
        )
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.aclose()
