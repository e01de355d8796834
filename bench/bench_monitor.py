"""Monitor benchmark: prints its figures and exits non-zero when a target is missed.

1. A sweep of 100 targets against a local server where 20 hang finishes within the probe
   timeout + 1 s.
2. ``verdict()`` and ``all_verdicts()`` answered from the store in < 5 ms (median, in-process).
3. 20 platforms x 30 days of history keep the database < 5 MB.

Run: ``.venv/bin/python bench/bench_monitor.py`` from the repository root.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bot.monitor.migrations  # noqa: F401
from bot import migrations
from bot.monitor import MonitorService, MonitorSettings, history
from bot.store import Store, transaction
from tests.fakes.status_server import ThreadedStatusServer
from tests.monitor.helpers import platform, source

PROBE_TIMEOUT = 2.0
FAILED: list[str] = []


def check(ok: bool, what: str) -> str:
    if not ok:
        FAILED.append(what)
    return "ok" if ok else "MISSED"


async def sweep_bench(fake: ThreadedStatusServer, tmp: Path) -> None:
    s = MonitorSettings(
        timeout_s=PROBE_TIMEOUT,
        trust_env=False,
        retry_delays_s=(0.0, 0.0),
        control_urls=(fake.url("/http/ok"),),
    )
    ps = {}
    for i in range(100):
        path = f"/fault/hang/{i}" if i % 5 == 0 else f"/bench/ok/{i}"
        if i % 5:
            fake.text(path, "<html>ok</html>", content_type="text/html")
        else:
            fake.routes[path] = fake.routes["/fault/hang"]
        ps[f"p{i:03d}"] = platform(f"p{i:03d}", [source("http", fake.url(path))])
    store = Store(tmp / "sweep.db")
    store.migrate(migrations.steps())
    svc = MonitorService(store, ps, s)
    try:
        await svc.sweep([f"p{i:03d}" for i in range(1, 100, 5)])  # warm the connection pool
        t = time.perf_counter()
        out = await svc.sweep()
        took = time.perf_counter() - t
    finally:
        await svc.aclose()
        store.close()
    hung = sum(1 for v in out.values() if v.evidence[0].failed_step == "timeout")
    up = sum(1 for v in out.values() if v.evidence[0].signal == "up")
    limit = PROBE_TIMEOUT + 1
    print(
        f"sweep: 100 targets ({up} up, {hung} hung) in {took:.2f} s "
        f"(probe timeout {PROBE_TIMEOUT:g} s, limit {limit:g} s) "
        f"{check(took < limit and hung == 20 and up == 80, 'sweep time')}"
    )


def fill_history(
    store: Store,
    ids: list[str],
    start: float,
    days: int,
    every: float,
    settings: MonitorSettings,
) -> int:
    n = 0
    steps = int(days * 86400 / every)
    for k in range(steps):
        at = start + k * every
        with transaction(store.db) as db:
            if k % int(3600 / every) == 0:  # the running service prunes every hour
                history.prune(db, at, settings)
            for j, pid in enumerate(ids):
                down = (k + j * 37) % 500 < 6  # a short outage now and then
                history.record(
                    db,
                    pid,
                    at,
                    "down" if down else "up",
                    None if down else 120.0 + (k * 7 + j) % 90,
                )
                n += 1
    return n


def db_size(path: Path) -> int:
    """The database file plus any WAL / shared-memory files beside it."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


async def store_bench(fake: ThreadedStatusServer, tmp: Path) -> None:
    days, every = 30, 300.0
    t0 = 1_760_000_000.0
    now = t0 + days * 86400
    clock = [now]
    ids = [f"plat{i:02d}" for i in range(20)]
    ok = fake.url("/http/ok")
    ps = {
        pid: platform(
            pid,
            [
                source("http", ok, keyword="Welcome", degraded_ms=3000),
                source(
                    "statuspage",
                    fake.url("/statuspage/ok/summary.json"),
                    component="Codespaces",
                    official=True,
                ),
            ],
        )
        for pid in ids
    }
    path = tmp / "history.db"
    store = Store(path)
    store.migrate(migrations.steps())
    t = time.perf_counter()
    rows = fill_history(store, ids, t0, days, every, MonitorSettings())
    fill_s = time.perf_counter() - t
    s = MonitorSettings(trust_env=False, control_urls=(ok,), retry_delays_s=(0.0,))
    svc = MonitorService(store, ps, s, clock=lambda: clock[0])
    try:
        await svc.sweep()  # real state rows and evidence for every platform
        for i in range(40):
            await svc.add_report(
                ids[i % 20], adapter="bench", chat_id=i % 7, user_id=i, text="down?"
            )
        await svc.prune(now)
        verdict_ms, all_ms = [], []
        for i in range(300):
            a = time.perf_counter()
            await svc.verdict(ids[i % 20])
            b = time.perf_counter()
            await svc.all_verdicts()
            c = time.perf_counter()
            verdict_ms.append((b - a) * 1000)
            all_ms.append((c - b) * 1000)
        v = await svc.verdict(ids[0])
    finally:
        await svc.aclose()
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    size = db_size(path)
    mv, ma = statistics.median(verdict_ms), statistics.median(all_ms)
    p95v = statistics.quantiles(verdict_ms, n=20)[18]
    p95a = statistics.quantiles(all_ms, n=20)[18]
    print(
        f"history: {rows} checks (20 platforms x {days} d every {every:g} s) written in "
        f"{fill_s:.1f} s, pruned to 24 h raw + hourly + daily"
    )
    print(f"verdict(): median {mv:.2f} ms, p95 {p95v:.2f} ms {check(mv < 5, 'verdict()')}")
    print(
        f"all_verdicts() (20 platforms): median {ma:.2f} ms, p95 {p95a:.2f} ms "
        f"{check(ma < 5, 'all_verdicts()')}"
    )
    print(
        f"database: {size / 1e6:.2f} MB {check(size < 5e6, 'db size')}  "
        f"(uptime 24h/7d/30d of {v.platform_id}: {v.uptime.h24:.3f}/{v.uptime.d7:.3f}/"
        f"{v.uptime.d30:.3f})"
    )


async def command_bench(fake: ThreadedStatusServer, tmp: Path) -> None:
    """/status and /status colab through the whole core (parse, handler, render), from the store."""
    from bot.core.models import Inbound
    from bot.core.render import TelegramRenderer
    from bot.settings import Settings
    from bot.wiring import build_core

    ok = fake.url("/http/ok")
    cfg = tmp / "bench.toml"
    overrides = "".join(
        f'[override.{pid}]\nstatus_sources = [{{ kind = "http", url = "{ok}" }}]\n'
        for pid in (
            "colab",
            "kaggle",
            "binder",
            "codespaces",
            "cocalc",
            "datalore",
            "deepnote",
            "lightning",
            "paperspace",
            "hf-spaces",
            "jupyterlite",
            "sagemaker-studio-lab",
        )
    )
    cfg.write_text(
        f'[monitor]\ninterval_s = 3600\ntrust_env = false\ncontrol_urls = ["{ok}"]\n' + overrides
    )
    core = build_core(Settings(db=tmp / "cmd.db", config=cfg, _env_file=None))  # type: ignore[call-arg]
    renderer = TelegramRenderer()
    try:
        await core.ctx.service("monitor").sweep()
        timings: dict[str, list[float]] = {"/status": [], "/status colab": []}
        for i in range(200):
            for text in timings:
                cmd, _, args = text[1:].partition(" ")
                msg = Inbound("bench", "c", f"u{i}", "u", cmd, args)
                a = time.perf_counter()
                renderer.render(await core.handle(msg))
                timings[text].append((time.perf_counter() - a) * 1000)
    finally:
        await core.aclose()
    for text, ms in timings.items():
        med = statistics.median(ms)
        print(
            f"{text:<14} via the core, from the store: median {med:.2f} ms {check(med < 5, text)}"
        )


async def main() -> int:
    with ThreadedStatusServer(hang_s=30) as fake, tempfile.TemporaryDirectory() as d:
        await sweep_bench(fake, Path(d))
        await store_bench(fake, Path(d))
        await command_bench(fake, Path(d))
    if FAILED:
        print("MISSED: " + ", ".join(FAILED))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
