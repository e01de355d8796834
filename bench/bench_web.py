"""Web benchmark: the status page and the Statuspage summary under 200 concurrent clients.

A store with 20 platforms and 90 days of history (written through the monitor's own
``history.record`` / ``track_incident`` and one real sweep against a local fake, three
platforms down) is served by ``WebServer`` in a child process; this process runs 200 clients
(keep-alive, each sending requests back to back) against ``/``, ``/api/v2/summary.json`` and a
static ``/hello`` route on the same server, one route at a time, and prints the median and p95
latency of each and their ratio to ``/hello`` (target: ``/`` and the summary within 5x of
``/hello``, median), and the page's size (target: under 100 KB). Run twice: with the default
5 s cache, and with none (every request waits for a read of the store, shared by the requests
in flight).

Run: ``.venv/bin/python bench/bench_web.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLIENTS = 200
REQUESTS = 2000  # per route
DAYS = 90
FAILED: list[str] = []


def platforms(base: str) -> dict[str, object]:
    from tests.monitor.helpers import platform, source

    return {
        f"p{i:02d}": platform(
            f"p{i:02d}", [source("http", f"{base}/bench/{i}")], name=f"Platform {i:02d}"
        )
        for i in range(20)
    }


async def seed(db: Path) -> None:
    import bot.migrations  # noqa: F401
    from bot import migrations
    from bot.monitor import MonitorService, MonitorSettings, history
    from bot.store import Store, transaction
    from tests.fakes.status_server import Reply, ThreadedStatusServer

    now = time.time()
    store = Store(db)
    store.migrate(migrations.steps())
    with ThreadedStatusServer() as fake:
        ps = platforms(f"http://{fake.host}:{fake.port}")
        for i in range(20):
            ok = i not in (3, 11, 17)
            fake.reply(f"/bench/{i}", Reply(body="ok") if ok else Reply(status=503))
        with transaction(store.db) as d:
            for pid in ps:
                # a check every 30 min for 90 days (the hourly and daily buckets), every 5 min
                # over the last 24 h (the raw checks behind the chart)
                times = [now - k * 1800 for k in range(DAYS * 48, 48, -1)]
                times += [now - k * 300 for k in range(288, 0, -1)]
                for n, at in enumerate(times):
                    down = n % 997 == 0
                    history.record(
                        d, pid, at, "down" if down else "up", None if down else 120 + n % 80
                    )
                for k in range(1, 6):  # five past incidents each
                    start = now - k * 15 * 86400 - 3600
                    history.track_incident(d, pid, "down", start, since=start, title="HTTP 503")
                    history.track_incident(d, pid, "up", start + 1200, since=start + 1200, title="")
            history.prune(d, now, MonitorSettings())
        s = MonitorSettings(
            trust_env=False,
            retry_delays_s=(0.0, 0.0),
            failure_threshold=1,
            jitter_s=0.0,
            control_urls=(fake.url("/http/ok"),),
        )
        svc = MonitorService(store, ps, s)
        await svc.sweep()
        await svc.aclose()
    store.close()


async def serve(db: Path, cache_s: float) -> None:
    """The child process: a WebServer on the seeded store until stdin closes."""
    from bot.metrics import Metrics
    from bot.monitor import MonitorSettings
    from bot.store import Store
    from bot.web.app import WebServer
    from bot.web.data import StoreStatusData
    from bot.web.settings import WebSettings

    store = Store(db)
    data = StoreStatusData(store, platforms("http://127.0.0.1:9"), MonitorSettings())  # type: ignore[arg-type]
    srv = WebServer(
        WebSettings(host="127.0.0.1", port=0, cache_s=cache_s),
        data,
        metrics=Metrics(),
        hello_route=True,
    )
    await srv.start()
    print(srv.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await srv.stop()
    store.close()


async def load(base: str, path: str) -> list[float]:
    import aiohttp

    lat: list[float] = []
    left = REQUESTS
    conn = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(base, connector=conn) as http:

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                async with http.get(path, headers={"Accept-Encoding": "gzip"}) as r:
                    await r.read()
                    assert r.status == 200, (path, r.status)
                lat.append(time.perf_counter() - t)

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return lat


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.95) - 1]


async def bench(db: Path, cache_s: float) -> None:
    import aiohttp

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        str(db),
        "--cache",
        str(cache_s),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        port = int(await child.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base) as http:
            async with http.get("/", headers={"Accept-Encoding": "identity"}) as r:
                page = await r.read()
            for path in ("/", "/api/v2/summary.json", "/hello"):  # warm up
                async with http.get(path) as r:
                    await r.read()
        print(
            f"\n-- cache {cache_s:g} s, {CLIENTS} concurrent clients, {REQUESTS} requests a route"
        )
        results = {}
        for path in ("/hello", "/", "/api/v2/summary.json"):
            results[path] = await load(base, path)
        hello = statistics.median(results["/hello"])
        for path, lat in results.items():
            med = statistics.median(lat)
            ratio = med / hello
            line = f"{path:22} median {med * 1000:7.1f} ms   p95 {p95(lat) * 1000:7.1f} ms"
            if path != "/hello":
                target = "ok" if ratio <= 5 else "MISSED"
                if ratio > 5 and cache_s > 0:
                    FAILED.append(f"{path} at {ratio:.1f}x /hello")
                line += f"   {ratio:4.1f}x /hello (target <= 5x: {target})"
            print(line)
        if cache_s > 0:
            zipped = len(gzip.compress(page, 6))
            ok = len(page) < 100_000
            if not ok:
                FAILED.append("page over 100 KB")
            print(
                f"page / : {len(page) / 1024:.1f} KB HTML ({zipped / 1024:.1f} KB gzip), "
                f"target < 100 KB: {'ok' if ok else 'MISSED'}"
            )
    finally:
        if child.stdin:
            child.stdin.close()
        await asyncio.wait_for(child.wait(), 30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=Path)
    ap.add_argument("--cache", type=float, default=5.0)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.cache))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        t = time.perf_counter()
        asyncio.run(seed(db))
        print(
            f"seeded 20 platforms x {DAYS} days in {time.perf_counter() - t:.1f} s "
            f"({db.stat().st_size / 1e6:.1f} MB)"
        )
        asyncio.run(bench(db, 5.0))
        asyncio.run(bench(db, 0.0))
    if FAILED:
        print("MISSED:", "; ".join(FAILED))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
