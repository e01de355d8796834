"""An aiohttp fake of the public status feeds the monitor reads, on 127.0.0.1.

Reusable by any test (and the benchmark): it serves ready-made scenarios for every source kind
and every fault the monitor must survive, plus routes a test defines itself::

    with ThreadedStatusServer() as fake:          # or: async with StatusServer() as fake
        fake.url("/statuspage/major_outage/summary.json")
        fake.json("/mine/summary.json", {...}); fake.reply("/x", Reply(status=503))
        fake.sequence("/flaky", [Reply(status=503), Reply(body="ok")])
        fake.hits["/flaky"]; fake.user_agents[-1]

``tls_error_url()`` is an https URL on a plain TCP server (a TLS handshake fails),
``closed_port_url()`` a port nothing listens on, ``DNS_FAIL_URL`` a name that cannot resolve.
Timestamps in the scenarios are relative to ``T0`` so tests can pin their clock to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

T0 = 1_760_000_000.0  # 2025-10-09T08:53:20Z: the tests' clock starts here
DNS_FAIL_URL = "http://nonexistent.invalid/"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes, str, or anything JSON-serialisable (then sent as JSON)
    content_type: str | None = None  # default: application/json for JSON bodies, else text/plain
    delay_s: float = 0.0  # sleep before answering ("slow")
    hang: bool = False  # never answer (until the client gives up or the server stops)
    headers: dict[str, str] = field(default_factory=dict)


# -- scenario payloads ------------------------------------------------------------------------
def statuspage(
    component_status: str = "operational",
    *,
    indicator: str = "none",
    incidents: Sequence[dict[str, Any]] = (),
    maintenances: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "page": {"id": "x", "name": "GitHub", "url": "https://www.githubstatus.com"},
        "status": {
            "indicator": indicator,
            "description": {
                "none": "All Systems Operational",
                "minor": "Minor Service Outage",
                "major": "Partial System Outage",
                "critical": "Major System Outage",
                "maintenance": "Service Under Maintenance",
            }.get(indicator, indicator),
        },
        "components": [
            {"id": "g1", "name": "Git Operations", "status": "operational", "group": False},
            {
                "id": "grp",
                "name": "Codespaces",
                "status": "operational",
                "group": True,
                "components": ["c1"],
            },  # a group component with the same name: must be skipped
            {"id": "c1", "name": "Codespaces", "status": component_status, "group": False},
            {
                "id": "v",
                "name": "Visit www.githubstatus.com for more information",
                "status": "operational",
                "group": False,
            },
        ],
        "incidents": list(incidents),
        "scheduled_maintenances": list(maintenances),
    }


def sp_incident(
    name: str, component: str = "Codespaces", status: str = "investigating", impact: str = "major"
) -> dict[str, Any]:
    return {
        "id": "inc1",
        "name": name,
        "status": status,
        "impact": impact,
        "shortlink": "https://stspg.io/abc",
        "started_at": iso(T0 - 1800),
        "components": [{"id": "c1", "name": component}],
    }


def sp_maintenance(
    name: str, status: str = "in_progress", component: str = "Codespaces"
) -> dict[str, Any]:
    return {
        "id": "m1",
        "name": name,
        "status": status,
        "shortlink": "https://stspg.io/m",
        "scheduled_for": iso(T0 - 600),
        "scheduled_until": iso(T0 + 3600),
        "components": [{"id": "c1", "name": component}],
    }


def google_incident(
    desc: str,
    products: Sequence[str],
    *,
    ended: bool = False,
    impact: str = "SERVICE_DISRUPTION",
    severity: str = "medium",
    begin: float = T0 - 3000,
) -> dict[str, Any]:
    inc: dict[str, Any] = {
        "id": "abc123",
        "number": "123",
        "begin": iso(begin),
        "created": iso(begin),
        "modified": iso(T0 - 60),
        "external_desc": desc,
        "severity": severity,
        "status_impact": impact,
        "uri": "incidents/abc123",
        "affected_products": [{"title": p, "id": p.lower().replace(" ", "-")} for p in products],
        "most_recent_update": {"text": "We are investigating.", "when": iso(T0 - 60)},
    }
    if ended:
        inc["end"] = iso(T0 - 600)
    return inc


def betterstack(state: str = "operational") -> dict[str, Any]:
    return {
        "data": {
            "id": "1",
            "type": "status_page",
            "attributes": {"company_name": "Hugging Face", "aggregate_state": state},
        },
        "included": [
            {
                "id": "r1",
                "type": "status_page_resource",
                "attributes": {"public_name": "Spaces", "status": state},
            }
        ],
    }


def binder_health(ok: bool) -> dict[str, Any]:
    return {
        "ok": ok,
        "checks": [
            {"service": "Hub", "ok": True},
            {"service": "Docker registry", "ok": ok},
            {"service": "Pod quota", "ok": True},
        ],
    }


def github_issue(
    title: str, number: int = 5900, created: float = T0 - 900, label: str = "announce"
) -> dict[str, Any]:
    return {
        "number": number,
        "title": title,
        "state": "open",
        "created_at": iso(created),
        "html_url": f"https://github.com/googlecolab/colabtools/issues/{number}",
        "labels": [{"name": label}],
    }


SCENARIOS: dict[str, Reply] = {
    # Atlassian Statuspage
    "/statuspage/ok/summary.json": Reply(body=statuspage()),
    "/statuspage/major_outage/summary.json": Reply(
        body=statuspage(
            "major_outage",
            indicator="major",
            incidents=[sp_incident("Codespaces are failing to start")],
        )
    ),
    "/statuspage/degraded/summary.json": Reply(
        body=statuspage("degraded_performance", indicator="minor")
    ),
    "/statuspage/incident/summary.json": Reply(
        body=statuspage(indicator="minor", incidents=[sp_incident("Slow Codespaces creation")])
    ),
    "/statuspage/other_incident/summary.json": Reply(
        body=statuspage(
            indicator="minor",
            incidents=[sp_incident("Git push delays", component="Git Operations")],
        )
    ),
    "/statuspage/maintenance/summary.json": Reply(
        body=statuspage(
            "under_maintenance",
            indicator="maintenance",
            maintenances=[sp_maintenance("Codespaces database upgrade")],
        )
    ),
    "/statuspage/maintenance_scheduled/summary.json": Reply(
        body=statuspage(maintenances=[sp_maintenance("Future upgrade", status="scheduled")])
    ),
    "/statuspage/page_major/summary.json": Reply(body=statuspage(indicator="major")),
    # Google Cloud / Workspace
    "/google/none/incidents.json": Reply(body=[]),
    "/google/ongoing/incidents.json": Reply(
        body=[
            google_incident("Drive errors", ["Google Drive"]),
            google_incident("Old Gmail issue", ["Gmail"], ended=True),
        ]
    ),
    "/google/outage/incidents.json": Reply(
        body=[
            google_incident(
                "Drive unavailable", ["Google Drive"], impact="SERVICE_OUTAGE", severity="high"
            ),
        ]
    ),
    "/google/ended/incidents.json": Reply(
        body=[
            google_incident("Drive errors", ["Google Drive"], ended=True),
        ]
    ),
    "/google/other_product/incidents.json": Reply(
        body=[
            google_incident("Gmail delays", ["Gmail"]),
        ]
    ),
    # Better Stack
    "/betterstack/ok/index.json": Reply(body=betterstack()),
    "/betterstack/degraded/index.json": Reply(body=betterstack("degraded")),
    "/betterstack/downtime/index.json": Reply(body=betterstack("downtime")),
    # Binder members
    "/binder/ok/health": Reply(body=binder_health(True)),
    "/binder/unhealthy/health": Reply(status=503, body=binder_health(False)),
    # GitHub issues with a label
    "/github/open/issues": Reply(body=[github_issue("Colab outage: cannot connect to runtimes")]),
    "/github/notice/issues": Reply(body=[github_issue("Elevated errors saving notebooks")]),
    "/github/none/issues": Reply(body=[]),
    "/github/old/issues": Reply(body=[github_issue("TPU v2 retirement", created=T0 - 40 * 86400)]),
    "/github/pr_only/issues": Reply(body=[{**github_issue("Fix typo"), "pull_request": {}}]),
    "/github/ratelimited/issues": Reply(status=403, body={"message": "API rate limit exceeded"}),
    # plain probes
    "/http/ok": Reply(
        body="<html><title>Colab</title>Welcome to Colab</html>", content_type="text/html"
    ),
    "/http/slow": Reply(
        body="<html>Welcome to Colab</html>", content_type="text/html", delay_s=0.4
    ),
    "/http/503": Reply(status=503, body="Service Unavailable"),
    "/http/404": Reply(status=404, body="Not Found"),
    "/http/keyword": Reply(body="<html>Please sign in</html>", content_type="text/html"),
    # faults
    "/fault/html": Reply(
        body="<!DOCTYPE html><html><body>Status</body></html>", content_type="text/html"
    ),
    "/fault/html_as_json": Reply(
        body="<html><body>oops</body></html>", content_type="application/json"
    ),
    "/fault/truncated": Reply(
        body='{"page": {"id": "x"}, "components": [{"na', content_type="application/json"
    ),
    "/fault/garbage": Reply(body=b"\x00\xff\xfe garbage \x81", content_type="application/json"),
    "/fault/empty": Reply(body=b"", content_type="application/json"),
    "/fault/wrong_shape": Reply(body={"hello": "world"}),
    "/fault/error_page": Reply(
        body="<html><h1>Something went wrong</h1></html>", content_type="text/html"
    ),
    "/fault/500": Reply(status=500, body="Internal Server Error"),
    "/fault/hang": Reply(hang=True),
}


class StatusServer:
    """The fake, running on the current event loop."""

    def __init__(self, *, host: str = "127.0.0.1", hang_s: float = 120.0) -> None:
        self.host = host
        self.port = 0
        self.hang_s = hang_s
        self.routes: dict[str, Reply] = dict(SCENARIOS)
        self.sequences: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str] = []
        self._runner: web.AppRunner | None = None
        self._tls: asyncio.Server | None = None
        self.tls_port = 0

    # -- configuration (safe to call from any thread) ----------------------------------------
    def reply(self, path: str, reply: Reply) -> str:
        self.routes[path] = reply
        return self.url(path)

    def json(self, path: str, data: Any, status: int = 200, **kw: Any) -> str:
        return self.reply(path, Reply(status=status, body=data, **kw))

    def text(
        self, path: str, text: str, status: int = 200, content_type: str = "text/plain", **kw: Any
    ) -> str:
        return self.reply(path, Reply(status=status, body=text, content_type=content_type, **kw))

    def sequence(self, path: str, replies: Sequence[Reply]) -> str:
        """Successive replies for ``path``; the last one repeats."""
        self.sequences[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def tls_error_url(self, path: str = "/") -> str:
        return f"https://{self.host}:{self.tls_port}{path}"

    # -- serving ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        self.user_agents.append(request.headers.get("User-Agent", ""))
        if path == "/fault/redirect_loop" or path.startswith("/fault/redirect_loop/"):
            raise web.HTTPFound(path)
        seq = self.sequences.get(path)
        if seq:
            reply = seq.pop(0) if len(seq) > 1 else seq[0]
        else:
            reply = self.routes.get(path) or self.routes.get(_strip_query(path))
        if reply is None:
            return web.Response(status=404, text="no such fake route")
        if reply.hang:
            await asyncio.sleep(self.hang_s)
        delay = float(request.query.get("delay_ms", reply.delay_s * 1000)) / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        body = reply.body
        ctype = reply.content_type
        if not isinstance(body, bytes | str):
            body, ctype = json.dumps(body), ctype or "application/json"
        raw = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": ctype or "text/plain", **reply.headers}
        return web.Response(status=reply.status, body=raw, headers=headers)

    async def start(self) -> StatusServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._tls = await asyncio.start_server(_not_tls, self.host, 0)
        self.tls_port = self._tls.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._tls is not None:
            self._tls.close()
            self._tls = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StatusServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _strip_query(path: str) -> str:
    return path.split("?", 1)[0]


async def _not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers a TLS ClientHello with plain HTTP: the client's handshake fails."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.read(1024), 2)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
    writer.close()


class ThreadedStatusServer(StatusServer):
    """The same fake on its own event loop in a daemon thread: usable from any test or loop."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start_thread(self) -> ThreadedStatusServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(StatusServer.start(self))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(StatusServer.aclose(self))
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-status-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    def call(self, fn: Callable[[], Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def __enter__(self) -> ThreadedStatusServer:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port_url(host: str = "127.0.0.1", path: str = "/") -> str:
    """An http URL on a port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return f"http://{host}:{port}{path}"
