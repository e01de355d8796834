"""What the Telegram adapter costs: updates per second turned into replies, and the latency it
adds over calling the core directly (median), against the local fake Bot API on 127.0.0.1.

    .venv/bin/python bench/bench_telegram.py [--updates 600] [--samples 150]

The real python-telegram-bot ``Application`` long-polls the fake (``tests/fakes/telegram_api``),
which runs in the same process and event loop, so its own cost is in the numbers. Commands are
knowledge-base ones (no /run). Throughput is measured twice: with the rate limiter switched off
(the adapter's own capacity) and with Telegram's limits (≈30 messages/s overall, by design).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bot.wiring import build_core

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.adapters.telegram import Limits, TelegramAdapter  # noqa: E402
from bot.core.app import Core  # noqa: E402
from bot.settings import Settings, TelegramSettings  # noqa: E402
from tests.fakes.telegram_api import FakeBot, FakeTelegram  # noqa: E402

COMMANDS = (
    "/help",
    "/start",
    "/status azure",
    "/platforms",
    "/alternatives colab gpu",
    "/tips restriction in your location",
)


async def start(
    fake: FakeTelegram, core: Core, settings: Settings, limits: Limits
) -> tuple[TelegramAdapter, FakeBot]:
    bot = fake.new_bot("nbhelp_bench_bot")
    s = TelegramSettings(
        token=SecretStr(bot.token), base_url=fake.base_url, base_file_url=fake.base_file_url
    )
    adapter = TelegramAdapter(core, s, limits=limits, typing_after_s=5.0)
    await adapter.start()
    return adapter, bot


async def core_latency(core: Core, samples: int) -> list[float]:
    out = []
    for i in range(samples):
        text = COMMANDS[i % len(COMMANDS)]
        t = time.perf_counter()
        reply = await core.handle_text(
            text, platform="telegram", chat_id=str(10_000 + i), user_id="1", bot_username="b"
        )
        out.append(time.perf_counter() - t)
        assert reply is not None
    return out


async def adapter_latency(bot: FakeBot, samples: int) -> list[float]:
    """Inject one update, wait for its reply to reach the fake; one at a time."""
    out = []
    for i in range(samples):
        chat = 20_000 + i
        t = time.monotonic()
        bot.send(COMMANDS[i % len(COMMANDS)], chat_id=chat)
        calls = await bot.wait_sent(1, chat)
        out.append(calls[0].at - t)
    return out


async def throughput(bot: FakeBot, n: int, first_chat: int) -> tuple[float, float, int]:
    """Inject ``n`` updates at once (distinct chats) and wait for every reply.

    Returns (updates/s, seconds until the last reply arrived, most replies in any 1 s window).
    """
    before = bot.sent_total
    start_index = len(bot.calls)
    t = time.monotonic()
    for i in range(n):
        bot.send(COMMANDS[i % len(COMMANDS)], chat_id=first_chat + i)
    await bot.wait_for(lambda b: b.sent_total - before >= n, within=600)
    times = sorted(c.at for c in bot.calls[start_index:] if c.ok and c.method == "sendMessage")
    elapsed = times[-1] - t
    window = max(sum(1 for u in times if s <= u < s + 1.0) for s in times)
    return n / elapsed, elapsed, window


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:7.2f} ms"


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


async def main(updates: int, samples: int, limited: int) -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db=Path(tmp) / "bench.db", _env_file=None)  # type: ignore[call-arg]
        core = build_core(settings)
        async with FakeTelegram() as fake:
            adapter, bot = await start(fake, core, settings, Limits.unlimited())
            await core_latency(core, 30)  # warm up imports and caches
            await adapter_latency(bot, 30)
            direct = await core_latency(core, samples)
            via = await adapter_latency(bot, samples)
            raw, raw_s, _ = await throughput(bot, updates, 100_000)
            await adapter.stop()
            adapter, bot = await start(fake, core, settings, Limits())
            _, paced_s, paced_window = await throughput(bot, limited, 200_000)
            await adapter.stop()
        core.close()
    added = statistics.median(via) - statistics.median(direct)
    print("Telegram adapter, real python-telegram-bot against the local fake Bot API (no /run)")
    print("(the fake runs in the same process and loop: its cost is included)")
    print(f"{'':30}{'core.handle_text':>18}{'adapter, update→reply':>24}{'added':>12}")
    print(
        f"{'median latency':30}{ms(direct):>18}{ms(via):>24}{added * 1000:9.2f} ms"
        f"   (n={samples}, one at a time)"
    )
    print(
        f"{'p90 latency':30}{p90(direct) * 1000:15.2f} ms{p90(via) * 1000:21.2f} ms"
        f"{(p90(via) - p90(direct)) * 1000:9.2f} ms"
    )
    print(
        f"{'throughput, limiter off':30}{1 / statistics.mean(direct):13.0f} upd/s"
        f"{raw:19.0f} upd/s   ({updates} updates at once, {raw_s:.2f} s)"
    )
    print(
        f"{'with Telegram limits':30}{'':>18}{limited / paced_s:19.1f} upd/s"
        f"   ({limited} updates in {paced_s:.2f} s; most in any 1 s: {paced_window},"
        " limit 30)"
    )
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=600)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--limited", type=int, default=90)
    args = ap.parse_args()
    raise SystemExit(asyncio.run(main(args.updates, args.samples, args.limited)))
