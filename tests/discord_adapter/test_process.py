"""``python -m bot`` with only the NBHELP_DISCORD__* settings, against the fake: it answers
the core's commands and stops cleanly on SIGTERM (the runner's signal handling)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.discord_adapter.conftest import replies
from tests.fakes.discord_api import GUILD_ID, FakeDiscord
from tests.helpers import process_env


@pytest.mark.slow
async def test_python_m_bot_answers_and_stops_on_sigterm(fake: FakeDiscord, tmp_path: Path) -> None:
    env = process_env(
        tmp_path,
        NBHELP_DISCORD__TOKEN=fake.token,
        NBHELP_DISCORD__API_BASE=fake.api_base,
        NBHELP_DISCORD__GATEWAY_URL=fake.gateway_url,
        NBHELP_DISCORD__GUILD_ID=str(GUILD_ID),
    )
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        await fake.wait_ready(within=60)
        asks = [
            ("help", {}, "/status"),
            ("status", {"platform": "colab"}, "colab"),
            ("alternatives", {"platform": "colab", "needs": "gpu"}, "Kaggle"),
            ("platforms", {}, "Colab"),
            ("tips", {"words": "mount drive"}, "drive"),
        ]
        for name, options, expected in asks:
            ix = await fake.slash(name, options)
            await replies(fake, ix)
            assert expected.lower() in ix.text().lower(), (name, ix.text())
            assert ix.ack_latency is not None and ix.ack_latency < 3.0
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()
        assert fake.client_closes == [1000]
        assert fake.token not in log.read_text()  # the token is redacted from the log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
