"""``/run`` and ``/run --gpu`` through the real core, routed to the configured backends:
a GPU gateway (a fake on loopback), Kaggle (a fake on loopback), or nothing."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.core.app import Core
from bot.settings import Settings
from bot.wiring import build_core
from tests.conftest import Chat
from tests.fakes.gateway_api import FakeGateway
from tests.fakes.kaggle_api import KaggleFake

pytestmark = pytest.mark.slow


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def make_core(tmp_path: Path) -> AsyncIterator[Callable[..., Core]]:
    made: list[Core] = []

    def make(**settings: Any) -> Core:
        core = build_core(
            Settings(
                db=tmp_path / "bot.db",
                monitor={"background": False, "control_urls": ()},
                _env_file=None,  # type: ignore[call-arg]
                **settings,
            )
        )
        made.append(core)
        return core

    yield make
    for core in made:
        await core.aclose()


def kaggle_settings(fake: KaggleFake) -> dict[str, Any]:
    return {
        "base_url": fake.url,
        "token": fake.token,
        "accept_risk": True,
        "poll_initial_s": 0.05,
        "poll_max_s": 0.1,
        "poll_jitter_s": 0,
        "retry_initial_s": 0.05,
        "progress_every_s": 0.05,
    }


async def test_gpu_runs_on_the_gpu_gateway_and_info_lists_every_backend(
    make_core: Callable[..., Core],
) -> None:
    async with FakeGateway() as gw:
        core = make_core(
            run={"pool_size": 0},
            gateways={
                "gpu": {
                    "base_url": gw.url,
                    "token": "test-token",
                    "gpu": True,
                    "gpu_description": "NVIDIA T4 (fake)",
                    "warm_pool_size": 0,
                }
            },
        )
        chat = Chat(core)
        answer = await chat.say("/run --gpu print(6 * 7)")
        assert "42" in answer
        assert len(gw.kernels) == 1  # the session's kernel, on the gateway
        info = await chat.say("/run --info")
        await core.aclose()  # while the gateway still answers (it deletes the kernel)
        assert "GPU (/run --gpu): NVIDIA T4 (fake) (gateway:gpu)" in info
        assert "this host's sandbox" in info
        assert "gateway:gpu, GPU NVIDIA T4 (fake)" in info and "reachable" in info


async def test_gpu_runs_on_kaggle_when_no_gpu_gateway_answers(
    make_core: Callable[..., Core],
) -> None:
    async with KaggleFake() as kaggle:
        core = make_core(
            run={"pool_size": 0},
            gateways={
                "gpu": {
                    "base_url": dead_url(),
                    "gpu": True,
                    "warm_pool_size": 0,
                    "start_timeout_s": 5,
                }
            },
            kaggle=kaggle_settings(kaggle),
        )
        progress: list[str] = []

        async def notify(text: str) -> None:
            progress.append(text)

        reply = await core.handle_text(
            "/run --gpu print('hello')",
            platform="test",
            chat_id="c",
            user_id="u",
            notify=notify,
        )
        assert reply is not None
        text = " ".join(getattr(b, "code", "") for b in reply.blocks)
        assert "hello" in text
        assert progress and progress[0].startswith("⏳ Queued on Kaggle's free GPU")
        assert kaggle.deleted  # the kernel was deleted after the run
        info = await Chat(core).say("/run --info")
        assert "not reachable" in info and "Kaggle" in info


async def test_without_a_gpu_backend_gpu_runs_are_refused_clearly(
    make_core: Callable[..., Core],
) -> None:
    core = make_core(run={"pool_size": 0})
    answer = await Chat(core).say("/run --gpu print(1)")
    assert "No GPU backend is configured" in answer


async def test_an_unknown_backend_in_the_settings_stops_the_start(tmp_path: Path) -> None:
    from bot.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as err:
        load_settings(db=tmp_path / "x.db", run={"backend": "gateway:nope"})
    assert err.value.problems == [
        "run: backend 'gateway:nope' is not configured (known: kaggle, local)"
    ]
