"""/status, /report, /subscribe and alerts end to end: the real core and monitor, a real
SQLite file, the config file pointing Colab's sources at the fake status server."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.console import ConsoleAdapter
from bot.core.alerts import deliver, drain
from bot.core.app import Core
from bot.core.contract import ChatGone
from bot.core.render import ConsoleRenderer
from bot.monitor import history
from bot.settings import Settings
from bot.store import transaction
from bot.wiring import build_core
from tests.conftest import Chat
from tests.fakes.status_server import Reply, ThreadedStatusServer, closed_port_url, google_incident


def write_config(
    path: Path,
    fake: ThreadedStatusServer,
    tag: str,
    *,
    interval: float = 3600,
    control: str | None = None,
) -> Path:
    control = control or fake.url("/http/ok")
    path.write_text(
        f"""
[monitor]
interval_s = {interval}
jitter_s = 0
timeout_s = 6
retries = 0
trust_env = false
control_urls = ["{control}"]

[override.colab]
status_sources = [
  {{ kind = "http", url = "{fake.url(f"/{tag}/colab")}", name = "Colab probe", degraded_ms = 2000 }},
  {{ kind = "google_workspace", url = "{fake.url(f"/{tag}/gws.json")}", name = "Google Workspace", products = ["Google Drive"], official = true, verified = 2026-01-01, evidence = "https://example.org/feed-docs" }},
]
"""
    )
    fake.text(f"/{tag}/colab", "<html>Colab</html>")
    fake.json(f"/{tag}/gws.json", [])
    return path


@pytest.fixture
def colab_core(
    tmp_path: Path, fake: ThreadedStatusServer, request: pytest.FixtureRequest
) -> Iterator[tuple[Core, str]]:
    tag = request.node.name.replace("[", "_").replace("]", "_")
    cfg = write_config(tmp_path / "nbhelp.toml", fake, tag)
    core = build_core(Settings(db=tmp_path / "bot.db", config=cfg, _env_file=None))  # type: ignore[call-arg]
    yield core, tag
    core.close()


async def checks(core: Core, n: int) -> None:
    for _ in range(n):
        await core.ctx.service("monitor").check("colab")


async def test_up_then_down_after_threshold_then_recovered(
    colab_core: tuple[Core, str], fake: ThreadedStatusServer
) -> None:
    core, tag = colab_core
    chat = Chat(core)
    await checks(core, 1)
    text = await chat.say("/status colab")
    assert "Google Colab: up" in text and "probably on your side" in text
    fake.reply(f"/{tag}/colab", Reply(status=503, body="oops"))
    await checks(core, 2)
    text = await chat.say("/status colab")
    assert "🔴" not in text and "possible problems" in text  # two failures: not down yet
    await checks(core, 1)
    text = await chat.say("/status colab")
    assert "🔴 Google Colab" in text and "503" in text and "Meanwhile" in text
    fake.text(f"/{tag}/colab", "<html>Colab</html>")
    await checks(core, 1)
    assert "🔴 Google Colab" in await chat.say("/status colab")  # one success: not yet
    await checks(core, 1)
    assert "Google Colab: up" in await chat.say("/status colab")


async def test_slow_is_degraded_after_threshold(
    colab_core: tuple[Core, str], fake: ThreadedStatusServer
) -> None:
    core, tag = colab_core
    chat = Chat(core)
    fake.reply(f"/{tag}/colab", Reply(body="<html>Colab</html>", delay_s=3.0))  # limit 2 s
    await checks(core, 2)
    text = await chat.say("/status colab")
    assert "possible problems" in text and "slow" in text and "probably on your side" not in text
    await checks(core, 1)
    assert "🟠 Google Colab: degraded" in await chat.say("/status colab")


async def test_official_incident_moves_the_verdict_at_once(
    colab_core: tuple[Core, str], fake: ThreadedStatusServer
) -> None:
    core, tag = colab_core
    fake.json(
        f"/{tag}/gws.json",
        [
            google_incident(
                "Drive: users cannot open files",
                ["Google Drive"],
                impact="SERVICE_OUTAGE",
                severity="high",
            )
        ],
    )
    await checks(core, 1)
    text = await Chat(core).say("/status colab")
    assert "Drive: users cannot open files" in text
    assert "up" not in text.split("\n")[0].split(":")[1]


async def test_down_platform_goes_to_the_bottom_of_alternatives(
    colab_core: tuple[Core, str], fake: ThreadedStatusServer
) -> None:
    core, tag = colab_core
    fake.reply(f"/{tag}/colab", Reply(status=503))
    await checks(core, 3)
    text = await Chat(core).say("/alternatives kaggle gpu")
    first = next(line for line in text.splitlines() if line.startswith("1."))
    assert "Colab" not in first


async def test_offline_bot_says_unknown_and_sends_no_alert(
    tmp_path: Path, fake: ThreadedStatusServer
) -> None:
    cfg = write_config(tmp_path / "c.toml", fake, "offline", control=closed_port_url())
    dead = closed_port_url()
    cfg.write_text(
        cfg.read_text()
        .replace(fake.url("/offline/colab"), dead)
        .replace(fake.url("/offline/gws.json"), dead)
    )
    core = build_core(Settings(db=tmp_path / "bot.db", config=cfg, _env_file=None))  # type: ignore[call-arg]
    try:
        chat = Chat(core)
        await chat.say("/subscribe all")
        monitor = core.ctx.service("monitor")
        for _ in range(4):
            await monitor.sweep(["colab"])
        text = await chat.say("/status colab")
        assert "cannot reach the internet" in text and "🔴" not in text
        assert await monitor.pending("test") == []
    finally:
        await core.aclose()


async def test_report_counts_people_not_messages(colab_core: tuple[Core, str]) -> None:
    core, _ = colab_core
    alice = Chat(core, user_id="alice", chat_id="g1", private=False)
    assert "counted" in await alice.say("/report colab cannot connect")
    assert "already reported" in await alice.say("/report colab still broken")
    for i in range(3):
        await Chat(core, user_id=f"u{i}", chat_id=f"g{i % 2 + 2}", private=False).say(
            "/report colab no runtime"
        )
    text = await Chat(core, user_id="zed", chat_id="g9").say("/report google colab down")
    assert "5 people in 4 chats" in text


async def test_known_message_report_is_explained_not_counted(colab_core: tuple[Core, str]) -> None:
    core, _ = colab_core
    text = await Chat(core, user_id="amma").say(
        "/report colab Failed to assign a backend: restriction in your location"
    )
    assert "country" in text.lower()
    summary = (await core.ctx.service("monitor").verdict("colab")).reports
    assert summary.reports == 0


async def test_known_message_of_another_platform_still_counts(colab_core: tuple[Core, str]) -> None:
    core, _ = colab_core
    text = await Chat(core, user_id="kofi").say("/report kaggle restriction in your location")
    assert "counted" in text
    assert (await core.ctx.service("monitor").verdict("kaggle")).reports.reports == 1


async def test_report_bad_input(chat: Chat) -> None:
    assert "Say which platform" in await chat.say("/report")
    assert "Did you mean" in await chat.say("/report colabb broken")
    assert "retired" in await chat.say("/report azure")


async def test_subscribe_needs_admin_in_groups(colab_core: tuple[Core, str]) -> None:
    core, _ = colab_core
    member = Chat(core, chat_id="grp", user_id="m", private=False, admin=False)
    assert "Only an admin" in await member.say("/subscribe colab")
    admin = Chat(core, chat_id="grp", user_id="a", private=False, admin=True)
    assert "alerts for Google Colab" in await admin.say("/subscribe colab")
    assert "alerts for Google Colab" in await member.say("/subscriptions")
    assert "Did you mean" in await admin.say("/subscribe kagle")
    text = await admin.say("/subscribe google colab, kaggle")
    assert "Google Colab" in text and "Kaggle" in text
    assert "no alerts" in await admin.say("/unsubscribe all")


async def test_chart_is_a_png_once_there_is_data(colab_core: tuple[Core, str]) -> None:
    core, _ = colab_core
    await checks(core, 2)
    reply = await Chat(core).reply("/status colab chart 7d")
    assert not reply.images  # two checks a moment apart: nothing to draw yet, and it says so
    assert "too little to draw a chart yet" in await Chat(core).say("/status colab chart 7d")
    now = time.time()

    def seed(db: Any) -> None:
        with transaction(db):
            for i in range(1, 40):
                history.record(db, "colab", now - i * 600, "down" if i in (5, 6) else "up", 90.0)

    await core.ctx.store.call(seed)
    for span in ("24h", "7d", "30d"):
        reply = await Chat(core).reply(f"/status colab chart {span}")
        assert reply.images and reply.images[0].png.startswith(b"\x89PNG"), span
    assert "Name a platform" in await Chat(core).say("/status chart")
    odd = await Chat(core).say("/status colab chart 90d")
    assert "I can draw the last 24h, 7d or 30d, not 90d" in odd


async def test_console_chat_gets_one_alert_per_transition_across_restart(
    tmp_path: Path, fake: ThreadedStatusServer
) -> None:
    cfg = write_config(tmp_path / "c.toml", fake, "restart")
    settings = Settings(db=tmp_path / "bot.db", config=cfg, _env_file=None)  # type: ignore[call-arg]

    async def run_once(n_checks: int) -> str:
        core = build_core(settings)
        out = io.StringIO()
        console = ConsoleAdapter(core, tmp_path / "out", stream=out)
        monitor = core.ctx.service("monitor")
        try:
            await console.ask("/subscribe colab")
            for _ in range(n_checks):
                await monitor.check("colab")
            await drain(monitor, console)
            return out.getvalue()
        finally:
            await core.aclose()

    fake.reply("/restart/colab", Reply(status=503))
    first = await run_once(3)
    assert first.count("🔔") == 1 and "down" in first.lower()
    again = await run_once(2)  # restarted, still down: nothing new
    assert again.count("🔔") == 0
    fake.text("/restart/colab", "<html>Colab</html>")
    recovered = await run_once(2)
    assert recovered.count("🔔") == 1 and "back up" in recovered


def test_ask_status_colab_and_probe_in_processes(
    tmp_path: Path, fake: ThreadedStatusServer
) -> None:
    cfg = write_config(tmp_path / "c.toml", fake, "proc", interval=0.001)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBHELP_")}
    env |= {"NBHELP_DB": str(tmp_path / "bot.db"), "NBHELP_CONFIG": str(cfg)}

    def run(*args: str) -> str:
        p = subprocess.run(
            [sys.executable, "-m", "bot", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert "Google Colab: up" in run("ask", "/status colab")
    fake.reply("/proc/colab", Reply(status=503))
    run("probe", "colab")
    run("ask", "/status colab")
    assert "🔴 Google Colab" in run("ask", "/status colab")  # third failed check: down
    assert "Google Colab" in run("probe", "colab")


class RecordingAdapter:
    """An adapter whose network is a list (errbot's testbot idea); chat "gone" was deleted."""

    name = "test"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.delivered = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_alert(self, chat_id: str, reply: object) -> None:
        if chat_id == "gone":
            raise ChatGone("chat not found")
        self.sent.append((chat_id, ConsoleRenderer().render(reply).messages[0]))  # type: ignore[arg-type]
        self.delivered.set()


class ObservedOutbox:
    """The real monitor; says when it has handled a gone chat (unsubscribed, alerts dropped)."""

    def __init__(self, monitor: object) -> None:
        self.monitor = monitor
        self.gone_handled = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.monitor, name)

    async def chat_gone(self, adapter: str, chat_id: str, error: str) -> int:
        dropped: int = await self.monitor.chat_gone(adapter, chat_id, error)  # type: ignore[attr-defined]
        self.gone_handled.set()
        return dropped


class FlakyQueue:
    """The real monitor, except that reading its queue fails once (a locked database)."""

    def __init__(self, monitor: object) -> None:
        self.monitor = monitor
        self.failed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.monitor, name)

    def alert_stream(self, adapter: str) -> object:
        if not self.failed:
            self.failed = True
            raise RuntimeError("database is locked")
        return self.monitor.alert_stream(adapter)  # type: ignore[attr-defined]


async def test_delivery_survives_a_queue_failure(
    colab_core: tuple[Core, str], fake: ThreadedStatusServer, caplog: pytest.LogCaptureFixture
) -> None:
    core, tag = colab_core
    await Chat(core, chat_id="alive").say("/subscribe colab")
    fake.reply(f"/{tag}/colab", Reply(status=503))
    await checks(core, 3)
    adapter = RecordingAdapter()
    pump = asyncio.create_task(deliver(FlakyQueue(core.ctx.service("monitor")), adapter))
    try:
        await asyncio.wait_for(adapter.delivered.wait(), 60)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert [c for c, _ in adapter.sent] == ["alive"]
    assert any("alert queue for test failed" in r.getMessage() for r in caplog.records)


async def test_delivery_loop_sends_and_unsubscribes_gone_chats(
    colab_core: tuple[Core, str], fake: ThreadedStatusServer
) -> None:
    core, tag = colab_core
    await Chat(core, chat_id="alive").say("/subscribe colab")
    await Chat(core, chat_id="gone").say("/subscribe all")
    fake.reply(f"/{tag}/colab", Reply(status=503))
    await checks(core, 3)
    monitor = core.ctx.service("monitor")
    adapter = RecordingAdapter()
    observed = ObservedOutbox(monitor)
    pump = asyncio.create_task(deliver(observed, adapter))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(
            asyncio.gather(adapter.delivered.wait(), observed.gone_handled.wait()), 60
        )
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert [c for c, _ in adapter.sent] == ["alive"]
    assert "Google Colab" in adapter.sent[0][1] and "/status colab" in adapter.sent[0][1]
    assert await monitor.pending("test") == []
    assert (await monitor.subscriptions("test", "gone")).empty
    assert not (await monitor.subscriptions("test", "alive")).empty
