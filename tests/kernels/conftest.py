"""Fixtures for the kernel service tests: real sandboxed kernels, real secrets to protect.

Kernels are started once per test module (``module_service``) and shared; each test uses its
own session keys, so tests stay independent while paying the ~1 s kernel start only a few
times per module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from bot.kernels import KernelService
from tests.kernels.helpers import (
    ENV_SECRET,
    TEST_LIMITS,
    TIMEOUT_LIMITS,
    TOKEN_VAR,
    Protected,
    Runner,
    make_protected,
)


@pytest.fixture(scope="module")
def secret_env() -> Iterator[None]:
    """The bot's token in the environment of the process that starts the kernels."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_VAR, ENV_SECRET)
        yield


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Protected:
    return make_protected(tmp_path_factory.mktemp("bot"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_service(secret_env: None, protected: Protected) -> AsyncIterator[KernelService]:
    service = KernelService(TEST_LIMITS, protected_paths=protected.paths)
    await service.start()
    assert service.available, service.unavailable_reason
    await service.wait_until_warm()
    yield service
    await service.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def timeout_service(secret_env: None, protected: Protected) -> AsyncIterator[KernelService]:
    """A service whose wall limit is short: for the tests of the time limit itself."""
    service = KernelService(TIMEOUT_LIMITS, protected_paths=protected.paths)
    await service.start()
    assert service.available, service.unavailable_reason
    yield service
    await service.aclose()


@pytest.fixture
def timeout_runner(
    timeout_service: KernelService, request: pytest.FixtureRequest
) -> Callable[..., Runner]:
    """``timeout_runner("name")``: like ``runner``, on the short-wall service."""

    def make(name: str = "main") -> Runner:
        return Runner(timeout_service, f"{request.node.name}:{name}")

    return make


@pytest.fixture
def runner(module_service: KernelService, request: pytest.FixtureRequest) -> Callable[..., Runner]:
    """``runner("name")``: a Runner whose session key is unique to this test."""

    def make(name: str = "main") -> Runner:
        return Runner(module_service, f"{request.node.name}:{name}")

    return make


@pytest.fixture
def shared(module_service: KernelService) -> Runner:
    """One session shared by the tests of a module that do not depend on fresh state."""
    return Runner(module_service, "shared")
