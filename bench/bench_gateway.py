"""Benchmark of the gateway backend against a real Jupyter Kernel Gateway 3.0.1 on loopback.

Run with ``.venv/bin/python bench/bench_gateway.py`` (``--quick`` for fewer repetitions) after
``./dev test`` made ``.venv-kg``. The gateway's kernelspec is the bubblewrap one
(``bot.kernels.kernelspec``). Measured side by side in one process, interleaved:

- warm ``print(1)``: ``KernelService.run`` on a warm session through ``GatewayBackend`` vs. a
  bare aiohttp client doing the same ``execute_request`` on its own kernel of the same gateway
  (target: median within 1.5x), the bare client both as is and with the one socket option the
  backend sets (``TCP_QUICKACK``: jupyter_server's WebSocket leaves Nagle on, and a delayed
  ACK stalls every other small frame by ~40 ms); the ratio is taken against the faster floor;
- the first run of a new session taking a spare from the warm pool vs. a warm run (within 2x);
- 8 users x 10 snippets at once through the gateway: all complete, none lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from pydantic import SecretStr

from bot.kernels import KernelLimits, KernelService, RunStatus
from bot.kernels.gateway import GatewayBackend, GatewaySettings
from bot.kernels.gateway.backend import tcp_quickack
from tests.kernels.real_gateway import KG_BIN, start_gateway, stop_gateway

PRINT = "print(1)"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def row(name: str, xs: list[float]) -> str:
    return f"  {name:<52} {median(xs) * 1e3:9.1f} {p95(xs) * 1e3:9.1f} {len(xs):5d}"


class BareClient:
    """The floor: plain aiohttp, one kernel, one WebSocket, execute and wait for reply + idle."""

    def __init__(self, url: str, token: str, *, quickack: bool = False) -> None:
        self.url = url
        self.quickack = quickack
        self.arm: Any = lambda: None
        self.http = aiohttp.ClientSession(headers={"Authorization": f"token {token}"})
        self.session = uuid.uuid4().hex
        self.kernel_id = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def start(self) -> None:
        body = {"name": "nbhelp-python", "env": {"KERNEL_USERNAME": "bench-bare"}}
        async with self.http.post(f"{self.url}/api/kernels", json=body) as resp:
            self.kernel_id = (await resp.json())["id"]
        ws_url = "ws" + self.url[4:] + f"/api/kernels/{self.kernel_id}/channels"
        self.ws = await self.http.ws_connect(ws_url, params={"session_id": self.session})
        if self.quickack:
            self.arm = tcp_quickack(self.ws)
        await self.execute(PRINT)

    def _msg(self, code: str) -> dict[str, Any]:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "session": self.session,
                "username": "bench",
                "date": "",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }

    async def execute(self, code: str) -> str:
        assert self.ws is not None
        msg = self._msg(code)
        msg_id = msg["header"]["msg_id"]
        await self.ws.send_json(msg)
        out, replied, idle = [], False, False
        while not (replied and idle):
            frame = await self.ws.receive_json()
            self.arm()
            if frame.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = frame["header"]["msg_type"]
            if kind == "stream":
                out.append(frame["content"]["text"])
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and frame["content"]["execution_state"] == "idle":
                idle = True
        return "".join(out)

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.kernel_id:
            async with self.http.delete(f"{self.url}/api/kernels/{self.kernel_id}"):
                pass
        await self.http.close()


async def measure(url: str, token: str, n: int, n_first: int) -> int:
    limits = KernelLimits(pool_size=2, max_sessions=10, runs_per_minute=10_000)
    settings = GatewaySettings(
        name="kg",
        base_url=url,
        token=SecretStr(token),
        kernelspec="nbhelp-python",
        warm_pool_size=2,
        max_kernels=14,
        sandboxed=True,
        start_timeout_s=120,
    )
    service = KernelService(limits, backend=GatewayBackend(settings, limits))
    bare = BareClient(url, token)
    bare_qa = BareClient(url, token, quickack=True)
    failures = 0
    try:
        await service.start()
        await service.wait_until_warm()
        await bare.start()
        await bare_qa.start()
        await service.run("bench:warm", "bench:warm", PRINT)  # the session exists and is warm
        warm: list[float] = []
        floor: list[float] = []
        floor_qa: list[float] = []
        for _ in range(n):  # interleaved, so all three see the same machine
            t = time.perf_counter()
            assert await bare.execute(PRINT) == "1\n"
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert await bare_qa.execute(PRINT) == "1\n"
            floor_qa.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = await service.run("bench:warm", "bench:warm", PRINT)
            warm.append(time.perf_counter() - t)
            failures += result.text != "1\n"

        first: list[float] = []
        warm_pair: list[float] = []
        for i in range(n_first):
            await service.wait_until_warm(1)
            t = time.perf_counter()
            result = await service.run(f"bench:new{i}", f"bench:new{i}", PRINT)
            first.append(time.perf_counter() - t)
            failures += result.text != "1\n"
            t = time.perf_counter()
            await service.run("bench:warm", "bench:warm", PRINT)
            warm_pair.append(time.perf_counter() - t)
            await service.reset(f"bench:new{i}")

        crowd_t = time.perf_counter()
        lost = await crowd(service, users=8, snippets=10)
        crowd_s = time.perf_counter() - crowd_t
    finally:
        await bare.aclose()
        await bare_qa.aclose()
        await service.aclose()

    print(f"\n  {'print(1) through the gateway':<52} {'median ms':>9} {'p95 ms':>9} {'n':>5}")
    print(row("floor: bare aiohttp execute, same gateway", floor))
    print(row("floor: bare aiohttp + TCP_QUICKACK, same gateway", floor_qa))
    print(row("GatewayBackend + KernelService, warm session", warm))
    ratio = median(warm) / min(median(floor), median(floor_qa))
    print(f"  ratio warm/floor: {ratio:.2f}x (target <= 1.5x) {'OK' if ratio <= 1.5 else 'MISSED'}")
    print(row("first run of a new session (warm pool)", first))
    print(row("warm run, measured alongside", warm_pair))
    ratio2 = median(first) / median(warm_pair)
    print(f"  ratio first/warm: {ratio2:.2f}x (target <= 2x) {'OK' if ratio2 <= 2 else 'MISSED'}")
    done = 80 - lost
    print(f"\n  8 users x 10 snippets: {done}/80 complete, {lost} lost, {crowd_s:.1f} s wall")
    return 1 if failures or lost else 0


async def crowd(service: KernelService, users: int, snippets: int) -> int:
    lost = 0

    async def user(u: int) -> None:
        nonlocal lost
        for i in range(snippets):
            code = f"x = {i} * {u}\nprint(x)"
            result = await service.run(f"crowd:{u}", f"crowd:{u}", code)
            if result.status is not RunStatus.OK or result.text != f"{i * u}\n":
                lost += 1

    await asyncio.gather(*(user(u) for u in range(users)))
    return lost


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not KG_BIN.exists():
        print(f"no Kernel Gateway at {KG_BIN}: run ./dev test once (it makes .venv-kg)")
        return 2
    n, n_first = (30, 5) if args.quick else (100, 12)
    root = Path(tempfile.mkdtemp(prefix="nbhelp-bench-kg-"))
    gateway = start_gateway(root, extra_env={}, options=[])
    print(
        f"nbhelp gateway benchmark  (cpus={os.cpu_count()}, Kernel Gateway 3.0.1 on loopback, "
        "bubblewrap kernelspec)"
    )
    try:
        return asyncio.run(measure(gateway.url, gateway.token, n, n_first))
    finally:
        stop_gateway(gateway)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
