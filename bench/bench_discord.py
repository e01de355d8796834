"""Discord acknowledgement latency while /run jobs are busy (issue 6).

The real discord.py client and the adapter run against the loopback fake Discord
(``tests/fakes/discord_api.py``) in one process and one event loop. Measured per interaction:
``INTERACTION_CREATE`` dispatched by the fake's gateway → first callback (defer or answer)
received by the fake's REST API. Discord's budget is 3 s.

Load: 200 interactions at ``RATE`` a second, a mix of /help, /status, /alternatives,
/platforms, /tips and /run. /run is a stand-in whose handler awaits ``BUSY_S`` seconds (a
kernel busy with someone's loop), so dozens of jobs are in flight at any moment; /status
runs the real outage monitor cut off from the network (its checks fail after seconds); a
second thread burns CPU in pure Python the whole time, competing for the GIL with the event
loop.

    .venv/bin/python bench/bench_discord.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr

from bot.adapters.discord import DiscordAdapter
from bot.core.app import Core
from bot.core.models import Inbound, Reply, codeblock
from bot.core.registry import Command, Option, Registry
from bot.settings import Settings
from bot.wiring import build_core
from handlers import COMMANDS
from tests.fakes.discord_api import GUILD_ID, FakeDiscord

N = 200
RATE = 40.0  # interactions a second
BUSY_S = 3.0  # how long each simulated /run job keeps its kernel busy
BUDGET_S = 3.0
DEAD = "http://127.0.0.1:9/"
MIX: list[tuple[str, dict[str, str]]] = [
    ("run", {"code": "while busy(): pass"}),
    ("help", {}),
    ("run", {"code": "train(model)"}),
    ("status", {"platform": "colab"}),
    ("alternatives", {"platform": "colab", "needs": "gpu"}),
    ("run", {"code": "df.describe()"}),
    ("platforms", {}),
    ("tips", {"words": "mount drive"}),
]


async def busy_run(ctx: object, msg: Inbound) -> Reply:
    """A stand-in for /run: the kernel is busy for BUSY_S seconds, then prints."""
    await asyncio.sleep(BUSY_S)
    return Reply.of(codeblock(f"ran: {msg.args[:40]}"))


def offline_monitor(core: Core) -> None:
    """The real outage monitor with every status source and control URL on a closed loopback
    port: /status then waits for checks that fail (seconds) and nothing leaves the host."""
    factories = getattr(core.ctx, "factories", {})
    factories.clear()
    try:
        from bot.services import build_monitor
    except ImportError:
        return
    kb = core.ctx.knowledge

    def offline(p: Any) -> Any:
        sources = [s.model_copy(update={"url": DEAD}) for s in p.status_sources]
        return p.model_copy(update={"status_sources": sources})

    config = {**kb.config.get("monitor", {}), "control_urls": [DEAD], "trust_env": False}
    core.ctx.knowledge = dataclasses.replace(
        kb,
        platforms={pid: offline(p) for pid, p in kb.platforms.items()},
        config={**kb.config, "monitor": config},
    )
    core.ctx.services["monitor"] = build_monitor(core.ctx)


def burn(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(10_000):
            x = (x + i * i) % 1_000_003


def max_in_flight(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


async def main() -> int:
    registry = Registry.of(COMMANDS)
    registry.commands["run"] = Command(
        "run",
        "Run Python code (benchmark stand-in: busy for a few seconds)",
        busy_run,
        (Option("code", "Python code", required=True, rest=True),),
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeDiscord() as fake:
            settings = Settings(
                db=Path(tmp) / "bench.db",
                discord_token=SecretStr(fake.token),
                discord_guild_id=GUILD_ID,
                discord_api_base=fake.api_base,
                discord_gateway_url=fake.gateway_url,
                _env_file=None,  # type: ignore[call-arg]
            )
            core = build_core(settings, registry)
            offline_monitor(core)
            adapter = DiscordAdapter(core, settings)
            await adapter.start()
            await fake.wait_ready()
            stop = threading.Event()
            burner = threading.Thread(target=burn, args=(stop,), daemon=True)
            burner.start()
            try:
                started = time.perf_counter()
                interactions = []
                for i in range(N):
                    name, options = MIX[i % len(MIX)]
                    interactions.append(await fake.slash(name, options))
                    await asyncio.sleep(1 / RATE)
                dispatch_s = time.perf_counter() - started
                await fake.wait_for(
                    lambda: all(ix.messages for ix in interactions), within=BUSY_S + 60
                )
                total_s = time.perf_counter() - started
            finally:
                stop.set()
                burner.join()
                await adapter.stop()
                await core.aclose() if hasattr(core, "aclose") else core.close()

    lat = [ix.ack_latency for ix in interactions if ix.ack_latency is not None]
    missed = [ix for ix in interactions if ix.ack_latency is None or ix.late()]
    runs = [
        ix.ack_latency * 1000
        for ix in interactions
        if ix.payload["data"]["name"] == "run" and ix.ack_latency is not None
    ]
    deferred = sum(1 for ix in interactions if ix.deferred)
    most_busy = max_in_flight(
        [
            (ix.dispatched_at, ix.messages[-1].at)
            for ix in interactions
            if ix.payload["data"]["name"] == "run"
        ]
    )
    lat_ms = sorted(x * 1000 for x in lat)
    p95 = lat_ms[int(0.95 * (len(lat_ms) - 1))]
    print("Discord acknowledgement latency: INTERACTION_CREATE dispatched → first callback")
    print(
        f"{N} interactions at {RATE:.0f}/s over {dispatch_s:.1f} s; up to {most_busy} /run jobs"
        f" busy at once ({BUSY_S:.0f} s each, simulated) plus a CPU-busy Python thread"
    )
    print(
        f"  median {statistics.median(lat_ms):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {max(lat_ms):7.1f} ms   budget {BUDGET_S * 1000:.0f} ms"
    )
    print(
        f"  /run only: median {statistics.median(runs):.1f} ms, max {max(runs):.1f} ms"
        " (deferred before any work)"
    )
    print(
        f"  deferred {deferred}, answered directly {N - deferred}; all {N} answered "
        f"in {total_s:.1f} s; missed the 3 s window: {len(missed)}"
    )
    worst = sorted(interactions, key=lambda ix: -(ix.ack_latency or 0))[:5]
    print(
        "  slowest: "
        + ", ".join(
            f"/{ix.payload['data']['name']} {(ix.ack_latency or 0) * 1000:.0f} ms"
            f" ({'deferred' if ix.deferred else 'direct'})"
            for ix in worst
        )
    )
    ok = not missed and max(lat_ms) < BUDGET_S * 1000
    print("  OK: every interaction acknowledged within 3 s" if ok else "  FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    raise SystemExit(asyncio.run(main()))
