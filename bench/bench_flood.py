"""Benchmark (issue 10): another user's /help and warm /run while kernels flood the bot.

Run with ``.venv/bin/python bench/bench_flood.py``. One bot core on a temporary database with
the real sandboxed kernel pool. Side by side in one run:

- quiet: a bystander's ``/help`` and warm ``/run print(1)``, one after the other, N times;
- flood: the same, while attackers keep flooding the bot's side of their kernels' sockets
  (the issue's attack: 4 MB frames pushed onto the shell stream from a thread; and signed
  IOPub traffic during a run). Each flooder is stopped by its traffic budget and killed; the
  next attacker starts at once from the warm pool, so a flood is going on throughout.

Prints the medians and p95s, the ratios flood/quiet (target: median within 2x), and how many
floods were stopped.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.settings import Settings
from bot.wiring import build_core
from tests.kernels.test_flood import SHELL_FLOOD, SIGNED_IOPUB_FLOOD

N = 40


async def timed(coro: object) -> float:
    t = time.perf_counter()
    await coro  # type: ignore[misc]
    return (time.perf_counter() - t) * 1000


async def measure(core: object, label: str) -> tuple[list[float], list[float]]:
    from tests.conftest import Chat

    helps, runs = [], []
    bystander = Chat(core, chat_id="bench", user_id="bystander")  # type: ignore[arg-type]
    for _ in range(N):
        helps.append(await timed(bystander.say("/help")))
        t = time.perf_counter()
        text = await bystander.say("/run print(1)")
        runs.append((time.perf_counter() - t) * 1000)
        assert "1" in text, text
    return helps, runs


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            db=Path(tmp) / "bench.db",
            monitor={"background": False, "control_urls": ()},
            run={"pool_size": 6, "max_sessions": 16, "runs_per_minute": 100_000, "wall_s": 30},
            _env_file=None,  # type: ignore[call-arg]
        )
        core = build_core(settings)
        kernels = core.ctx.kernels()
        assert kernels is not None
        await kernels.start()
        service = kernels.plain.service  # type: ignore[attr-defined]
        await service.wait_until_warm()
        from tests.conftest import Chat

        await Chat(core, chat_id="bench", user_id="bystander").say("/run pass")  # warm session
        quiet_help, quiet_run = await measure(core, "quiet")
        await service.wait_until_warm()

        stopped = 0
        flooding = True

        async def attack(i: int) -> None:
            nonlocal stopped
            n = 0
            while flooding:
                n += 1
                chat = Chat(core, chat_id=f"attack-{i}", user_id=f"attacker-{i}-{n}")
                code = SHELL_FLOOD if n % 2 else SIGNED_IOPUB_FLOOD
                text = await chat.say(f"/run {code}")
                if "(a flood)" in text:
                    stopped += 1
                else:  # the shell flood returns at once; its kernel is killed between runs
                    text = await chat.say("/run print('next')")
                    stopped += "(a flood)" in text

        attackers = [asyncio.create_task(attack(i)) for i in range(2)]
        await asyncio.sleep(1.0)  # let the first floods begin
        flood_help, flood_run = await measure(core, "flood")
        flooding = False
        await asyncio.gather(*attackers, return_exceptions=True)
        await core.aclose()

    print(f"{'':40}{'median ms':>12}{'p95 ms':>10}")
    rows = [
        ("/help, quiet", quiet_help),
        ("/help, while kernels flood", flood_help),
        ("warm /run print(1), quiet", quiet_run),
        ("warm /run print(1), while kernels flood", flood_run),
    ]
    for label, values in rows:
        print(f"{label:40}{statistics.median(values):>12.1f}{pct(values, 0.95):>10.1f}")
    help_ratio = statistics.median(flood_help) / statistics.median(quiet_help)
    run_ratio = statistics.median(flood_run) / statistics.median(quiet_run)
    print(f"floods stopped by the traffic budget: {stopped}")
    ok = help_ratio <= 2 and run_ratio <= 2
    print(
        f"{'PASS' if help_ratio <= 2 else 'FAIL'}  /help median under flood / quiet      {help_ratio:.2f}x (<= 2x)"
    )
    print(
        f"{'PASS' if run_ratio <= 2 else 'FAIL'}  warm /run median under flood / quiet  {run_ratio:.2f}x (<= 2x)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
