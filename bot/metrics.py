"""Prometheus metrics the core and services record, and ``/metrics`` serves.

Import-light and web-free: the core, the monitor and the kernel pool call the module-level
functions (``observe_command("telegram", "status", 0.12)``) without knowing about aiohttp. Every
:class:`Metrics` owns its own ``CollectorRegistry`` (never prometheus_client's global one), so
tests build a fresh one each and stay isolated; the process uses :func:`current`, which the
runner may replace with :func:`use`.

Without ``prometheus_client`` installed (the ``web`` extra) every call is a no-op.

Label values are bounded by design: chat platform names, command names from the registry,
platform ids from the knowledge base, verdict statuses. Never a user, a chat or free text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format
try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import generate_latest

    AVAILABLE = True
except ImportError:  # pragma: no cover - the web extra is installed in development and CI
    AVAILABLE = False

STATUSES = ("up", "degraded", "down", "maintenance", "unknown")
PROBE_RESULTS = STATUSES  # a probe's signal
# Chat replies: quick commands are tens of ms, /status waits up to ~4 s, /run up to its wall.
REPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MAX_LABEL = 40  # label values are cut: a stray long value cannot bloat the exposition


def _label(value: object) -> str:
    text = str(value)
    return text[:MAX_LABEL] if text else "-"


class _Null:
    """Stands in for a metric when prometheus_client is absent."""

    def labels(self, *_a: Any, **_k: Any) -> _Null:
        return self

    def inc(self, *_a: Any) -> None: ...
    def dec(self, *_a: Any) -> None: ...
    def set(self, *_a: Any) -> None: ...
    def observe(self, *_a: Any) -> None: ...
    def set_function(self, *_a: Any) -> None: ...


class Metrics:
    """One registry and every metric of the bot. Cheap to build; build one per app in tests."""

    def __init__(self) -> None:
        self.registry: Any = CollectorRegistry(auto_describe=True) if AVAILABLE else None
        self.commands = self._make(
            Counter,
            "nbhelp_commands",
            "Commands handled, by chat platform and command",
            ["platform", "command"],
        )
        self.command_errors = self._make(
            Counter,
            "nbhelp_command_errors",
            "Commands that ended in an unexpected error (the user got an error id)",
            ["platform", "command"],
        )
        self.reply_seconds = self._make(
            Histogram,
            "nbhelp_reply_seconds",
            "Time from a command's arrival to its reply being ready",
            ["platform", "command"],
            buckets=REPLY_BUCKETS,
        )
        self.run_queue = self._make(
            Gauge, "nbhelp_run_queue_length", "/run jobs waiting for a kernel or a slot", []
        )
        self.run_seconds = self._make(
            Histogram,
            "nbhelp_run_seconds",
            "Wall time of one /run execution, by outcome",
            ["outcome"],
            buckets=RUN_BUCKETS,
        )
        self.kernels_in_use = self._make(
            Gauge, "nbhelp_kernels_in_use", "Kernels running user code right now", []
        )
        self.probes = self._make(
            Counter,
            "nbhelp_probes",
            "Source checks of the outage monitor, by platform and result",
            ["platform", "result"],
        )
        self.probe_seconds = self._make(
            Histogram,
            "nbhelp_probe_latency_seconds",
            "Response time of the monitor's own probes, by platform",
            ["platform"],
            buckets=PROBE_BUCKETS,
        )
        self.alerts = self._make(
            Counter,
            "nbhelp_alerts",
            "Outage alerts delivered to chats, by chat platform and outcome (sent, failed)",
            ["adapter", "outcome"],
        )
        self.verdict = self._make(
            Gauge,
            "nbhelp_platform_status",
            "1 for the platform's current verdict, 0 for the other statuses",
            ["platform", "status"],
        )
        self.web_requests = self._make(
            Counter,
            "nbhelp_web_requests",
            "Requests to the web server, by route and status code",
            ["route", "code"],
        )

    def _make(self, kind: Any, name: str, doc: str, labels: list[str], **kw: Any) -> Any:
        if not AVAILABLE:
            return _Null()
        return kind(name, doc, labels, registry=self.registry, **kw)

    # -- recording (each call is a few dict lookups and a lock) -----------------------------
    def observe_command(
        self, platform: str, command: str, seconds: float, *, ok: bool = True
    ) -> None:
        p, c = _label(platform), _label(command)
        self.commands.labels(p, c).inc()
        self.reply_seconds.labels(p, c).observe(max(0.0, seconds))
        if not ok:
            self.command_errors.labels(p, c).inc()

    def observe_run(self, seconds: float, outcome: str = "ok") -> None:
        self.run_seconds.labels(_label(outcome)).observe(max(0.0, seconds))

    def set_run_queue(self, length: int) -> None:
        self.run_queue.set(max(0, length))

    def set_kernels_in_use(self, count: int) -> None:
        self.kernels_in_use.set(max(0, count))

    def watch_kernels(
        self, in_use: Callable[[], float], queue: Callable[[], float] | None = None
    ) -> None:
        """Read the kernel pool's gauges at scrape time instead of setting them on each change."""
        self.kernels_in_use.set_function(in_use)
        if queue is not None:
            self.run_queue.set_function(queue)

    def observe_probe(self, platform: str, result: str, seconds: float | None = None) -> None:
        p = _label(platform)
        self.probes.labels(p, result if result in PROBE_RESULTS else "unknown").inc()
        if seconds is not None:
            self.probe_seconds.labels(p).observe(max(0.0, seconds))

    def alert_sent(self, adapter: str) -> None:
        self.alerts.labels(_label(adapter), "sent").inc()

    def alert_failed(self, adapter: str) -> None:
        self.alerts.labels(_label(adapter), "failed").inc()

    def set_verdict(self, platform: str, status: str) -> None:
        p = _label(platform)
        for s in STATUSES:
            self.verdict.labels(p, s).set(1 if s == status else 0)

    def set_verdicts(self, statuses: Iterable[tuple[str, str]]) -> None:
        for platform, status in statuses:
            self.set_verdict(platform, status)

    def observe_web(self, route: str, code: int) -> None:
        self.web_requests.labels(_label(route), str(code)).inc()

    # -- exposition -------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        if not AVAILABLE:
            return b"# prometheus_client is not installed (pip install 'nbhelp[web]')\n"
        return bytes(generate_latest(self.registry))


_current = Metrics()


def current() -> Metrics:
    """The process's metrics (what ``/metrics`` serves unless an app was given its own)."""
    return _current


def use(metrics: Metrics) -> Metrics:
    """Make ``metrics`` the process's current one (the runner, or a test); returns the old one."""
    global _current
    old, _current = _current, metrics
    return old


# Module-level shortcuts for the core and services: ``from bot import metrics``.
def observe_command(platform: str, command: str, seconds: float, *, ok: bool = True) -> None:
    _current.observe_command(platform, command, seconds, ok=ok)


def observe_run(seconds: float, outcome: str = "ok") -> None:
    _current.observe_run(seconds, outcome)


def set_run_queue(length: int) -> None:
    _current.set_run_queue(length)


def set_kernels_in_use(count: int) -> None:
    _current.set_kernels_in_use(count)


def observe_probe(platform: str, result: str, seconds: float | None = None) -> None:
    _current.observe_probe(platform, result, seconds)


def alert_sent(adapter: str) -> None:
    _current.alert_sent(adapter)


def alert_failed(adapter: str) -> None:
    _current.alert_failed(adapter)


def set_verdict(platform: str, status: str) -> None:
    _current.set_verdict(platform, status)
