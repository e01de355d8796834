"""``/healthz`` (the process and its event loop answer) and ``/readyz`` (the bot can work).

Readiness checks: the database takes a write; each configured chat adapter is connected; the
monitor's newest check is recent; the kernel pool's state. The adapters and the kernel pool are
read through callables the runner supplies, so this module imports neither.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.web.data import StatusData

log = logging.getLogger("nbhelp.web")
CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str = ""
    required: bool = True  # a failing optional check is reported but keeps the bot ready

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "required": self.required}


CheckResult = Check | bool
Probe = Callable[[], CheckResult | Awaitable[CheckResult]]


def _as_check(value: CheckResult) -> Check:
    return value if isinstance(value, Check) else Check(bool(value), "" if value else "not ready")


def adapter_check(adapter: Any) -> Check:
    """A chat adapter's connection state: its ``connected`` property (the adapter contract);
    an object without one counts as connected once started."""
    connected = getattr(adapter, "connected", None)
    if isinstance(connected, bool):
        return Check(connected, "connected" if connected else "not connected")
    return Check(True, "started")


class Readiness:
    """The checks behind ``/readyz``; each bounded by a timeout, run concurrently."""

    def __init__(
        self,
        data: StatusData,
        *,
        adapters: Callable[[], Mapping[str, CheckResult]] | None = None,
        kernels: Probe | None = None,
        monitor: bool = True,
        sweep_max_age_s: float = 900.0,
        clock: Callable[[], float] = time.time,
        extra: Mapping[str, Probe] | None = None,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self.data = data
        self.adapters = adapters
        self.kernels = kernels
        self.monitor = monitor
        self.sweep_max_age_s = sweep_max_age_s
        self.clock = clock
        self.extra = dict(extra or {})
        self.timeout_s = timeout_s

    async def _database(self) -> Check:
        await self.data.write_check()
        return Check(True, "writable")

    async def _monitor(self) -> Check:
        h = await self.data.health()
        if h.monitored == 0:
            return Check(True, "no monitored platforms")
        if h.last_check_at is None:
            return Check(False, "no check has run yet")
        age = self.clock() - h.last_check_at
        if age > self.sweep_max_age_s:
            return Check(
                False, f"newest check is {age:.0f} s old (limit {self.sweep_max_age_s:.0f} s)"
            )
        return Check(True, f"newest check {age:.0f} s ago")

    async def _run(self, name: str, probe: Probe) -> tuple[str, Check]:
        try:
            async with asyncio.timeout(self.timeout_s):
                value = probe()
                if inspect.isawaitable(value):
                    value = await value
            return name, _as_check(value)
        except TimeoutError:
            return name, Check(False, f"no answer within {self.timeout_s:.0f} s")
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc, exc_info=True)
            return name, Check(False, f"failed: {type(exc).__name__}")

    async def run(self) -> tuple[bool, dict[str, Check]]:
        probes: dict[str, Probe] = {"database": self._database}
        if self.monitor:
            probes["monitor"] = self._monitor
        if self.kernels is not None:
            probes["kernels"] = self.kernels
        probes.update(self.extra)
        results = dict(await asyncio.gather(*(self._run(n, p) for n, p in probes.items())))
        if self.adapters is not None:
            try:
                states = self.adapters()
            except Exception as exc:
                log.warning("adapter states failed: %s", exc, exc_info=True)
                results["adapters"] = Check(False, f"failed: {type(exc).__name__}")
            else:
                for name, state in states.items():
                    results[f"adapter:{name}"] = _as_check(state)
        ready = all(c.ok for c in results.values() if c.required)
        return ready, results

    async def body(self) -> tuple[bool, dict[str, Any]]:
        ready, results = await self.run()
        return ready, {
            "ready": ready,
            "not_ready": sorted(n for n, c in results.items() if not c.ok and c.required),
            "checks": {n: c.as_dict() for n, c in sorted(results.items())},
        }


async def loop_lag_ms() -> float:
    """How long the event loop took to come back to this coroutine (a busy loop is slow)."""
    loop = asyncio.get_running_loop()
    t = loop.time()
    await asyncio.sleep(0)
    return round((loop.time() - t) * 1000, 2)
