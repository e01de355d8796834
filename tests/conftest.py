"""Shared fixtures: a whole bot core on a real SQLite file, driven like a chat (errbot's
``testbot`` idea: the adapters' network replaced by direct calls)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.core.app import Core
from bot.core.models import Reply
from bot.core.render import ConsoleRenderer
from bot.settings import Settings
from bot.wiring import build_core
from knowledge.loader import KnowledgeBase, load

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host: object, *args: object, **kwargs: object) -> object:
    """No test may reach the internet: names other than loopback do not resolve here."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in _LOOPBACK_NAMES or name.startswith("127.") or name in {"::1", "0.0.0.0", "None"}:
        return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]
    raise socket.gaierror(socket.EAI_NONAME, f"tests resolve loopback names only, not {name!r}")


@pytest.fixture(autouse=True, scope="session")
def no_internet() -> Iterator[None]:
    socket.getaddrinfo = _loopback_only  # type: ignore[assignment]
    yield
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True, scope="session")
def no_outside_settings() -> Iterator[None]:
    """The developer's own ``NBHELP_*`` variables (a token, a database path) never leak
    into a test: each test states the settings it runs with."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("NBHELP_")}
    for k in saved:
        del os.environ[k]
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(db=tmp_path / "nbhelp.db", out_dir=tmp_path / "out", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[Core]:
    c = build_core(settings)
    yield c
    await c.aclose()  # closes every service a test built (monitor client, kernels)


class Chat:
    """Talk to the core as one user in one chat and read replies as plain text."""

    def __init__(
        self,
        core: Core,
        *,
        chat_id: str = "c1",
        user_id: str = "u1",
        private: bool = True,
        admin: bool = False,
    ) -> None:
        self.core = core
        self.chat_id, self.user_id, self.private, self.admin = chat_id, user_id, private, admin
        self.renderer = ConsoleRenderer()

    async def reply(self, text: str, replied_text: str | None = None) -> Reply:
        r = await self.core.handle_text(
            text,
            platform="test",
            chat_id=self.chat_id,
            user_id=self.user_id,
            display_name=self.user_id,
            is_private=self.private,
            is_admin=self.admin,
            replied_text=replied_text,
        )
        assert r is not None
        return r

    async def say(self, text: str, replied_text: str | None = None) -> str:
        return "\n\n".join(self.renderer.render(await self.reply(text, replied_text)).messages)


@pytest.fixture
def chat(core: Core) -> Chat:
    return Chat(core)
