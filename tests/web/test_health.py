"""``adapter_check``: readiness reads an adapter's public ``connected`` and nothing else."""

from __future__ import annotations

import io
from pathlib import Path

from bot.adapters.console import ConsoleAdapter
from bot.core.app import Core
from bot.core.contract import ChatAdapter
from bot.web.health import Check, adapter_check


async def test_a_console_adapter_is_ready_once_started(core: Core, tmp_path: Path) -> None:
    adapter = ConsoleAdapter(core, tmp_path, stream=io.StringIO(), stdin=io.StringIO("/quit\n"))
    assert isinstance(adapter, ChatAdapter)
    assert adapter_check(adapter) == Check(False, "not connected")
    await adapter.start()
    try:
        assert adapter_check(adapter) == Check(True, "connected")
    finally:
        await adapter.stop()


class _Legacy:
    """An adapter-like object from before ``connected``: private state is not read."""

    name = "legacy"
    _started = False
    _stopped = True


def test_an_object_without_connected_counts_as_started() -> None:
    assert adapter_check(_Legacy()) == Check(True, "started")
    assert adapter_check(object()) == Check(True, "started")
