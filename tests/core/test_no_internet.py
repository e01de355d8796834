"""The suite's guard: names other than loopback never resolve inside tests."""

from __future__ import annotations

import socket

import httpx
import pytest


def test_public_names_do_not_resolve() -> None:
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("colab.research.google.com", 443)
    assert socket.getaddrinfo("localhost", 80)


async def test_http_clients_cannot_reach_the_internet() -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("https://example.org/")
