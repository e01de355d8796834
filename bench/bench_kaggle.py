"""Kaggle backend benchmark: the real KaggleRunner against the fake Kaggle API with realistic
delays (scaled down), every quirk mixed in. Prints the bot's own overhead per run (requests,
polling, downloads, CPU time on the bot's thread) and checks that no quirk loses or duplicates a
run. Exits non-zero when a run is lost, doubled, mixed up, or a kernel is left behind.

Delays are Kaggle-like minutes divided by ``--scale`` (default 60: a minute becomes a second):
queueing 20-90 s, running 10-60 s, API answers ~0.3 s, polls every 5 s growing to 30 s.
The fake runs on its own thread, so the CPU time measured on the bot's thread is the bot's.

Run: ``.venv/bin/python bench/bench_kaggle.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import migrations
from bot.kernels.kaggle import KaggleRunner, KaggleSettings, ledger
from bot.kernels.models import RunResult, RunStatus
from bot.store import Store
from tests.fakes.kaggle_api import Scenario, ThreadedKaggleFake, png, user_code

USERS = 6
RUNS_PER_USER = 2


def settings_for(url: str, token: str, scale: float) -> KaggleSettings:
    def s(seconds: float) -> float:
        return seconds / scale

    return KaggleSettings(
        base_url=url,
        token=token,  # type: ignore[arg-type]
        accept_risk=True,
        max_concurrent=2,
        wall_s=s(300),
        startup_grace_s=s(60),
        queue_timeout_s=s(1800),
        poll_initial_s=s(5),
        poll_max_s=s(30),
        poll_jitter_s=s(2),
        progress_every_s=s(30),
        stale_status_grace_s=s(120),
        retry_initial_s=s(2),
        retry_max_s=s(60),
        reconcile_delay_s=s(5),
        capacity_wait_s=s(60),
        orphan_after_s=s(300),
        reap_interval_s=s(120),
        quota_cache_s=s(300),
        user_daily_gpu_minutes=10_000,
        weekly_gpu_hours=10_000,
    )


def scenarios(scale: float, rng: random.Random) -> list[Scenario]:
    out = []
    for i in range(USERS * RUNS_PER_USER):
        queue_s = rng.uniform(20, 90) / scale
        run_s = rng.uniform(10, 60) / scale
        sc = Scenario(
            timed=(queue_s, run_s),
            echo=True,
            files={
                "nbhelp_result.json": b'{"ok": true, "figures": 1}',
                "nbhelp_plot_1.png": png(rng.randbytes(30_000)),
            },
        )
        if i == 2:
            sc.stale_first = 2  # a finished status before the run was ever queued
        if i == 4:
            sc.timed = (queue_s, 10**6)  # RUNNING forever: our deadline deletes it
        out.append(sc)
    return out


async def bench(scale: float, seed: int) -> int:
    rng = random.Random(seed)
    fake = ThreadedKaggleFake(latency_s=0.3 / scale).start_thread()
    fake.script(*scenarios(scale, rng))
    # The quirks, consumed by whichever run meets them first.
    fake.throttle("GetKernelSessionStatus", 4, status=429, retry_after=10 / scale)
    fake.throttle("GetKernelSessionStatus", 2, status=502)
    fake.throttle("ListKernelSessionOutput", 1, status=503)
    fake.throttle("DeleteKernel", 1, status=429, retry_after=5 / scale)
    fake.accept_then_fail(1, status=502)
    fake.fail_push(1, status=503)
    fake.external_sessions = 2  # the account's owner holds both GPU sessions for a while

    def free() -> None:
        fake.external_sessions = 0

    fake.call(free, delay_s=90 / scale)

    tmp = Path(tempfile.mkdtemp(prefix="bench-kaggle-"))
    store = Store(tmp / "bench.db")
    store.migrate(migrations.steps())
    settings = settings_for(fake.url, fake.token, scale)
    runner = KaggleRunner(settings, store, rng=random.Random(seed))
    await runner.start()

    results: dict[str, RunResult] = {}
    returned_at: dict[str, float] = {}
    codes = [f"print('user {u} run {i}')" for u in range(USERS) for i in range(RUNS_PER_USER)]

    async def user(u: int) -> None:
        for i in range(RUNS_PER_USER):
            code = f"print('user {u} run {i}')"
            results[code] = await runner.run(f"bench:{u}", code)
            returned_at[code] = time.monotonic()

    cpu0, wall0 = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(user(u) for u in range(USERS)))
    cpu = time.thread_time() - cpu0
    wall = time.perf_counter() - wall0
    await runner.aclose()

    # -- correctness: nothing lost, doubled, mixed up or left behind ---------------------------
    n = len(codes)
    ok = [c for c in codes if results.get(c) is not None and results[c].status is RunStatus.OK]
    timeouts = [c for c in codes if c in results and results[c].status is RunStatus.TIMEOUT]
    mixed = [c for c in ok if results[c].text != c + "\n"]
    started = [k for k in fake.kernels.values() if k.sessions]
    doubled = [k.slug for k in started if len(k.sessions) > 1]
    lost = n - len(results)
    left = fake.live_kernels()
    open_rows = await store.call(ledger.open_slugs)
    by_code = {user_code(k.body.get("text", "")): k for k in started}
    lags = []
    for c in ok:
        sc = by_code[c].sessions[0].scenario
        assert sc.timed is not None
        done = by_code[c].sessions[0].started_at + sc.timed[0] + sc.timed[1]
        lags.append(returned_at[c] - done)

    st, cs = runner.stats, runner.client.stats
    calls = {m: v / n for m, v in sorted(cs.requests.items())}
    print(f"nbhelp Kaggle backend benchmark (fake Kaggle API on loopback, delays / {scale:g})")
    print(
        f"  {n} runs from {USERS} users ({RUNS_PER_USER} each, one after another), "
        f"{settings.max_concurrent} on Kaggle at once; wall {wall:.1f} s "
        f"(≈ {wall * scale / 60:.0f} min real)"
    )
    print(
        "  quirks met: "
        f"{st.unclear_pushes} unclear pushes ({st.adopted_pushes} found on Kaggle, the rest "
        f"pushed again), {st.capacity_refusals} session-cap refusals, {st.stale_ignored} stale "
        f"statuses ignored, {cs.retries} retried throttling/5xx answers, 1 run RUNNING forever"
    )
    print(
        f"  outcome: {len(ok)} ok, {len(timeouts)} stopped at our deadline, "
        f"{n - len(ok) - len(timeouts) - lost} other"
    )
    print(
        f"  lost: {lost}   duplicated sessions: {len(doubled)}   outputs mixed up: {len(mixed)}   "
        f"kernels left on Kaggle: {len(left)}   open ledger rows: {len(open_rows)}   "
        f"sessions started: {fake.sessions_started} for {n} runs"
    )
    print("  the bot's own overhead per run (mean):")
    print(
        "    API requests   "
        + ", ".join(f"{m} {v:.1f}" for m, v in calls.items())
        + f"  = {sum(calls.values()):.1f}"
    )
    print(
        f"    status polls   {st.polls / n:.1f}   retries {cs.retries / n:.2f}   "
        f"downloads {cs.downloads / n:.1f} ({cs.download_bytes / n / 1000:.0f} kB)   "
        f"API bytes in {cs.bytes_in / n / 1000:.1f} kB"
    )
    print(
        f"    bot CPU on its thread  {cpu / n * 1000:.1f} ms   time waiting on HTTP "
        f"{cs.request_s / n * 1000:.0f} ms (fake answers in {300 / scale:.0f} ms)"
    )
    if lags:
        med = statistics.median(lags)
        p95 = sorted(lags)[max(0, round(0.95 * len(lags)) - 1)]
        print(
            f"    result in chat after Kaggle finished  median {med:.2f} s, p95 {p95:.2f} s "
            f"(≈ {med * scale:.0f} s / {p95 * scale:.0f} s at real speed: poll gap + listing "
            "+ downloads + delete)"
        )
    fake.stop()
    store.close()
    failed = lost or doubled or mixed or left or open_rows or len(ok) + len(timeouts) != n
    print("  RESULT:", "FAILED" if failed else "ok (no run lost, doubled or left behind)")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=60.0, help="divide Kaggle's delays by this")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    return asyncio.run(bench(args.scale, args.seed))


if __name__ == "__main__":
    sys.exit(main())
