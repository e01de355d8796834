"""``kill -9`` of the real ``python -m bot`` with ten /run queued and an alert in flight, then a
restart: every /run gets an answer (its output, or "the bot restarted" for the one that was
running) and the alert arrives at most twice (once more for the send in flight)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import bot.migrations
from bot.delivery.intake import RESTARTED_RUNNING
from bot.store import Store
from tests.fakes.telegram_api import FakeBot, FakeTelegram, parse_html
from tests.helpers import process_env

pytestmark = pytest.mark.asyncio(loop_scope="module")
GROUP = -100_4242
ALERTED = 4343  # a private chat subscribed to alerts
WAIT_S = 300.0  # real kernels on a loaded 2-core machine: a bound for "never", not a speed


def group_text(bot: FakeBot) -> str:
    out = []
    for c in bot.calls_of("sendMessage", chat_id=GROUP):
        text = str(c.params["text"])
        out.append(parse_html(text) if c.params.get("parse_mode") else text)
    return "\n".join(out)


def progress_says(bot: FakeBot, *needles: str) -> bool:
    for c in bot.calls_of("sendMessage", "editMessageText", chat_id=GROUP):
        text = str(c.params.get("text", ""))
        if all(n in text for n in needles):
            return True
    return False


def queue_an_alert(db: Path) -> None:
    """A subscribed chat with one alert waiting in the monitor's outbox."""
    store = Store(db)
    store.migrate(bot.migrations.steps())
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO monitor_subscriptions (adapter, chat_id, platform, created_at) "
            "VALUES ('telegram', ?, '*', ?)",
            [str(ALERTED), time.time()],
        )
        conn.execute(
            "INSERT INTO monitor_outbox (adapter, chat_id, platform, kind, status, text, "
            "evidence, created_at) VALUES ('telegram', ?, 'colab', 'down', 'down', ?, ?, ?)",
            [str(ALERTED), "Google Colab is down", json.dumps(["probe: timeout"]), time.time()],
        )


async def start(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=cwd, env=env, stdout=out, stderr=out
        )


@pytest.mark.slow
async def test_kill_9_with_ten_runs_queued_then_a_restart_answers_all(tmp_path: Path) -> None:
    async with FakeTelegram() as fake:
        bot = fake.new_bot("nbhelp_crash_bot")
        env = process_env(
            tmp_path,
            NBHELP_TELEGRAM__TOKEN=bot.token,
            NBHELP_TELEGRAM__BASE_URL=fake.base_url,
            NBHELP_WEB__ENABLED="false",
            NBHELP_RUN__MAX_RUNNING="1",
            NBHELP_RUN__MAX_SESSIONS="2",
            NBHELP_RUN__WALL_S="900",
            NBHELP_DELIVERY__PROGRESS_AFTER_S="0",
            NBHELP_DELIVERY__PROGRESS_EVERY_S="1",
        )
        queue_an_alert(Path(env["NBHELP_DB"]))
        in_flight = bot.hold("sendMessage", ALERTED)  # delivered, but never confirmed
        log = tmp_path / "bot.log"
        proc = await start(env, tmp_path, log)
        procs = [proc]
        try:
            await bot.wait_for(lambda b: b.sent(ALERTED), WAIT_S)
            kw: dict[str, Any] = {"chat_id": GROUP, "chat_type": "supergroup"}
            bot.send("/run import time; time.sleep(900)", user_id=900, first_name="Sleeper", **kw)
            for i in range(1, 10):
                bot.send(f"/run print({1000 + i})", user_id=900 + i, first_name=f"S{i}", **kw)
            # the first run is running, nine wait for it: now the bot dies
            await bot.wait_for(lambda b: progress_says(b, "9 runs queued", "1 running"), WAIT_S)
            proc.kill()
            await proc.wait()
            assert not in_flight.is_set()

            proc = await start(env, tmp_path, log)
            procs.append(proc)
            outputs = [str(1000 + i) for i in range(1, 10)]
            told = RESTARTED_RUNNING.split(",")[0]
            await bot.wait_for(
                lambda b: all(o in group_text(b) for o in outputs) and told in group_text(b),
                WAIT_S,
            )
            text = group_text(bot)
            assert all(text.count(o) == 1 for o in outputs)  # each answered exactly once
            assert text.count(told) == 1  # the one that was running: told, not run again
            # the alert: sent again once (it was in flight), at most twice in all
            await bot.wait_for(lambda b: len(b.sent(ALERTED)) >= 2, WAIT_S)
            assert len(bot.sent(ALERTED)) == 2
            assert "Google Colab is down" in bot.sent(ALERTED)[1].params["text"]
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text()[-3000:]
            with sqlite3.connect(env["NBHELP_DB"]) as db:
                assert db.execute("SELECT state FROM monitor_outbox").fetchall() == [("sent",)]
                open_requests = db.execute(
                    "SELECT count(*) FROM delivery_inbound WHERE state NOT IN ('answered')"
                ).fetchone()[0]
                assert open_requests == 0
            assert bot.token not in log.read_text()
        finally:
            in_flight.set()
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
