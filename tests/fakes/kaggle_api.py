"""An aiohttp fake of Kaggle's kernels API on 127.0.0.1, with the quirks the backend must survive.

It speaks the same wire format as the real API (``POST /v1/<Service>/<Method>``, camelCase JSON,
``Authorization: Bearer``; see ``bot/kernels/kaggle/client.py`` for the sources) and keeps
kernels, their sessions and outputs in memory::

    async with KaggleFake() as fake:
        settings = KaggleSettings(base_url=fake.url, token=fake.token, accept_risk=True)
        fake.script(Scenario(statuses=["QUEUED", "RUNNING", "COMPLETE"], log=[("stdout", "hi\\n")]))
        fake.throttle("GetKernelSessionStatus", 2, status=429, retry_after=7)   # HTML pages
        fake.accept_then_fail(1)          # the next push is accepted, but answered 502 (HTML)
        fake.fail_push(1)                 # the next push is refused with 503 before accepting
        fake.external_sessions = 2        # the account's own work holds every GPU session
        fake.sessions_started, fake.deleted, fake.max_active, fake.signed_auth_headers

Quirks scripted: HTML throttling pages (429 with Retry-After, 502, 503) where JSON is expected;
a 5xx answer to a push that was accepted; a stale finished status before the first QUEUED; a
run that stays RUNNING forever; the per-account GPU session cap ("Maximum batch GPU session
count of N reached." in ``error`` under HTTP 200); outputs behind signed URLs on another path
(one may be oversized, served chunked without a length). ``Scenario(execute=True)`` runs the
pushed script for real with this Python and returns what it printed and wrote.

Statuses advance one step per status poll (tests need no clock); ``Scenario(timed=(q, r))``
advances by the fake's clock instead (the benchmark's realistic delays).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

ALLOWED_SHAPES = {"NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaL4", "TpuV5E8"}
TERMINAL = {"COMPLETE", "ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}
RESULT_OK = json.dumps({"ok": True, "figures": 0}).encode()
HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
    "<p>Please try again later.</p></body></html>"
)
TITLES = {
    429: "Too Many Requests",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def png(payload: bytes = b"") -> bytes:
    """Bytes that start like a PNG (the runner checks the signature, not the pixels)."""
    return b"\x89PNG\r\n\x1a\n" + payload


@dataclass
class Scenario:
    """What one pushed session does."""

    statuses: list[str] = field(default_factory=lambda: ["QUEUED", "RUNNING", "COMPLETE"])
    stale_first: int = 0  # polls answered with ``stale_status`` before ``statuses`` begin
    stale_status: str = "COMPLETE"
    log: list[tuple[str, str]] = field(default_factory=lambda: [("stdout", "hello\n")])
    raw_log: str | None = None  # the log text exactly (malformed logs)
    files: dict[str, bytes] = field(default_factory=lambda: {"nbhelp_result.json": RESULT_OK})
    big_files: dict[str, int] = field(default_factory=dict)  # name -> size, streamed chunked
    failure: str = ""
    timed: tuple[float, float] | None = None  # (queue_s, run_s) by the fake's clock
    final: str = "COMPLETE"  # the status after ``timed`` ends
    execute: bool = False  # run the pushed script for real
    echo: bool = False  # the log is the user's code (decoded from the pushed script)


@dataclass
class Session:
    number: int
    scenario: Scenario
    started_at: float
    polls: int = 0
    finished: bool = False
    cancelled: bool = False
    ended_at: float | None = None
    run: asyncio.Task[tuple[list[tuple[str, str]], dict[str, bytes]]] | None = None


@dataclass
class Kernel:
    owner: str
    slug: str
    body: dict[str, Any]
    sessions: list[Session] = field(default_factory=list)
    deleted: bool = False


class KaggleFake:
    def __init__(
        self,
        *,
        token: str = "KGAT_fake_0123456789abcdef",
        username: str = "nbhelp-bot",
        cap: int = 2,
        latency_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.username = username
        self.cap = cap
        self.latency_s = latency_s
        self.clock = clock
        self.port = 0
        self.default = Scenario()
        self.external_sessions = 0
        self.quota: dict[str, Any] | None = {
            "gpuQuota": {"timeUsed": "3600s", "timeReserved": "0s", "totalTimeAllowed": "108000s"},
            "quotaRefreshTime": "2026-01-05T00:00:00Z",
        }
        self.kernels: dict[str, Kernel] = {}
        self.calls: Counter[str] = Counter()
        self.pushes: list[dict[str, Any]] = []
        self.sessions_started = 0
        self.deleted: list[str] = []
        self.max_active = 0
        self.signed_auth_headers: list[str] = []
        self.downloads: Counter[str] = Counter()
        self._scenarios: deque[Scenario] = deque()
        self._throttles: dict[str, deque[tuple[int, float | None]]] = {}
        self._accept_then_fail: deque[int] = deque()
        self._fail_push: deque[int] = deque()
        self._blobs: dict[str, tuple[bytes | None, int]] = {}
        self._ids = itertools.count(1)
        self._secret = b"fake-signing-key"
        self._runner: web.AppRunner | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="kaggle-fake-")

    # -- scripting -----------------------------------------------------------------------------
    def script(self, *scenarios: Scenario) -> None:
        """Scenarios for the next accepted pushes, in order (then ``default``)."""
        self._scenarios.extend(scenarios)

    def throttle(
        self, method: str, count: int, *, status: int = 429, retry_after: float | None = None
    ) -> None:
        """The next ``count`` calls of ``method`` get an HTML error page."""
        q = self._throttles.setdefault(method, deque())
        q.extend([(status, retry_after)] * count)

    def accept_then_fail(self, count: int = 1, status: int = 502) -> None:
        """The next ``count`` pushes start a session, but the answer is an HTML 5xx page."""
        self._accept_then_fail.extend([status] * count)

    def fail_push(self, count: int = 1, status: int = 503) -> None:
        """The next ``count`` pushes are refused with an HTML 5xx page (nothing is created)."""
        self._fail_push.extend([status] * count)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def active(self) -> int:
        """GPU sessions in use on the account: ours not finished and not deleted, plus others."""
        mine = sum(
            1
            for k in self.kernels.values()
            if not k.deleted
            for s in k.sessions
            if not s.finished and not s.cancelled
        )
        return mine + self.external_sessions

    def live_kernels(self) -> list[str]:
        return [slug for slug, k in self.kernels.items() if not k.deleted]

    def sessions_of(self, slug: str) -> int:
        kernel = self.kernels.get(slug)
        return len(kernel.sessions) if kernel else 0

    # -- serving -----------------------------------------------------------------------------
    async def start(self) -> KaggleFake:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/{service}/{method}", self._api)
        app.router.add_get("/storage/{blob}", self._blob)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def aclose(self) -> None:
        for kernel in self.kernels.values():
            for session in kernel.sessions:
                if session.run is not None and not session.run.done():
                    session.run.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._tmp.cleanup()

    async def __aenter__(self) -> KaggleFake:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        self.calls[method] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Unauthenticated")
        throttles = self._throttles.get(method)
        if throttles:
            status, retry_after = throttles.popleft()
            return _html(status, retry_after)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON body")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, f"No method {method}")
        result: web.StreamResponse = await handler(body)
        return result

    async def _m_IntrospectToken(self, body: dict[str, Any]) -> web.StreamResponse:
        active = body.get("token") == self.token
        return web.json_response({"active": active, "username": self.username if active else ""})

    async def _m_GetAcceleratorQuotaStatistics(self, body: dict[str, Any]) -> web.StreamResponse:
        if self.quota is None:
            return _error(404, "Not found")
        return web.json_response(self.quota)

    async def _m_SaveKernel(self, body: dict[str, Any]) -> web.StreamResponse:
        if self._fail_push:
            return _html(self._fail_push.popleft(), None)
        problem = self._validate(body)
        if problem:
            return _error(400, problem)
        self.pushes.append(body)
        owner, slug = body["slug"].split("/", 1)
        if self.active() >= self.cap:
            return web.json_response(
                {"error": f"Maximum batch GPU session count of {self.cap} reached."}
            )
        kernel = self.kernels.get(slug)
        if kernel is None or kernel.deleted:
            kernel = self.kernels[slug] = Kernel(owner, slug, body)
        scenario = self._scenarios.popleft() if self._scenarios else self.default
        session = Session(len(kernel.sessions) + 1, scenario, self.clock())
        if scenario.execute:
            session.run = asyncio.create_task(self._execute(body["text"]))
        kernel.sessions.append(session)
        self.sessions_started += 1
        self.max_active = max(self.max_active, self.active())
        if self._accept_then_fail:
            return _html(self._accept_then_fail.popleft(), None)
        return web.json_response(
            {
                "ref": f"/code/{owner}/{slug}",
                "url": f"https://www.kaggle.com/code/{owner}/{slug}",
                "versionNumber": session.number,
            }
        )

    def _validate(self, body: dict[str, Any]) -> str | None:
        full = body.get("slug")
        if not isinstance(full, str) or full.count("/") != 1:
            return "slug must be {username}/{kernel-slug}"
        owner, slug = full.split("/")
        if owner != self.username:
            return "You can only push kernels you own"
        title = body.get("newTitle")
        if not isinstance(title, str) or len(title) < 5 or slugify(title) != slug:
            return "The title must be at least 5 characters and resolve to the slug"
        if body.get("language") != "python" or body.get("kernelType") != "script":
            return "Invalid language or kernel type"
        if body.get("isPrivate") is not True or body.get("enableInternet") is not False:
            return "fake: nbhelp must push private kernels without internet"
        if body.get("machineShape") not in ALLOWED_SHAPES:
            return f"Unknown or retired machine shape {body.get('machineShape')!r}"
        timeout = body.get("sessionTimeoutSeconds")
        if not isinstance(timeout, int) or not 0 < timeout <= 9 * 3600:
            return "sessionTimeoutSeconds must be between 1 and 32400"
        if not isinstance(body.get("text"), str) or not body["text"]:
            return "text is required"
        return None

    def _kernel(self, body: dict[str, Any]) -> Kernel | None:
        slug = body.get("kernelSlug")
        kernel = self.kernels.get(slug) if isinstance(slug, str) else None
        if kernel is None or kernel.deleted or body.get("userName") != kernel.owner:
            return None
        return kernel

    async def _m_GetKernel(self, body: dict[str, Any]) -> web.StreamResponse:
        kernel = self._kernel(body)
        if kernel is None:
            return _error(404, "Not found")
        meta = {"ref": f"{kernel.owner}/{kernel.slug}", "slug": kernel.slug, "isPrivate": True}
        return web.json_response({"metadata": meta})

    async def _m_GetKernelSessionStatus(self, body: dict[str, Any]) -> web.StreamResponse:
        kernel = self._kernel(body)
        if kernel is None or not kernel.sessions:
            return _error(404, "Not found")
        session = kernel.sessions[-1]
        status = await self._advance(session)
        answer: dict[str, Any] = {"status": status}
        if status == "ERROR" and session.scenario.failure:
            answer["failureMessage"] = session.scenario.failure
        return web.json_response(answer)

    async def _advance(self, session: Session) -> str:
        sc = session.scenario
        if session.cancelled:
            return "CANCEL_ACKNOWLEDGED"
        if session.finished:
            return sc.final if sc.timed else sc.statuses[-1]
        session.polls += 1
        if session.polls <= sc.stale_first:
            return sc.stale_status
        if sc.timed is not None:
            elapsed = self.clock() - session.started_at
            queue_s, run_s = sc.timed
            status = "QUEUED" if elapsed < queue_s else "RUNNING"
            if elapsed >= queue_s + run_s:
                status = sc.final
        else:
            status = sc.statuses[min(session.polls - sc.stale_first, len(sc.statuses)) - 1]
        if status in TERMINAL:
            if session.run is not None:
                await session.run
            session.finished = True
            session.ended_at = self.clock()
        return status

    async def _m_ListKernelSessionOutput(self, body: dict[str, Any]) -> web.StreamResponse:
        kernel = self._kernel(body)
        if kernel is None or not kernel.sessions:
            return _error(404, "Not found")
        session = kernel.sessions[-1]
        if not session.finished:
            return web.json_response({"files": [], "log": ""})
        sc = session.scenario
        log, files = sc.log, dict(sc.files)
        if sc.echo:
            log = [("stdout", user_code(kernel.body.get("text", "")) + "\n")]
        if session.run is not None:
            log, files = session.run.result()
        listing = [
            {"fileName": name, "url": self._sign(data, len(data))} for name, data in files.items()
        ]
        listing += [
            {"fileName": name, "url": self._sign(None, size)} for name, size in sc.big_files.items()
        ]
        text = sc.raw_log if sc.raw_log is not None else kaggle_log(log)
        return web.json_response({"files": listing, "log": text})

    async def _m_DeleteKernel(self, body: dict[str, Any]) -> web.StreamResponse:
        kernel = self._kernel(body)
        if kernel is None:
            return _error(404, "Not found")
        kernel.deleted = True
        for session in kernel.sessions:
            if not session.finished:
                session.cancelled = True  # deleting stops the session (and the billing)
                session.ended_at = self.clock()
                if session.run is not None:
                    session.run.cancel()
        self.deleted.append(kernel.slug)
        return web.json_response({})

    # -- signed output URLs --------------------------------------------------------------------
    def _sign(self, data: bytes | None, size: int) -> str:
        blob = f"b{next(self._ids)}"
        self._blobs[blob] = (data, size)
        sig = hmac.new(self._secret, blob.encode(), hashlib.sha256).hexdigest()
        return f"{self.url}/storage/{blob}?Expires=9999999999&Signature={sig}"

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        blob = request.match_info["blob"]
        self.downloads[blob] += 1
        if "Authorization" in request.headers:
            self.signed_auth_headers.append(request.headers["Authorization"])
        want = hmac.new(self._secret, blob.encode(), hashlib.sha256).hexdigest()
        if request.query.get("Signature") != want or blob not in self._blobs:
            return web.Response(status=403, text="<Error>SignatureDoesNotMatch</Error>")
        data, size = self._blobs[blob]
        if data is not None:
            return web.Response(body=data, content_type="application/octet-stream")
        resp = web.StreamResponse()  # oversized: streamed without a length
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent = 0
        chunk = png(b"\0" * 65536)
        with contextlib.suppress(ConnectionError, RuntimeError):
            while sent < size:
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
        return resp

    # -- running a script for real ---------------------------------------------------------------
    async def _execute(self, text: str) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
        work = await asyncio.to_thread(_workdir, self._tmp.name, text)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "__script__.py",
            cwd=work,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(work)},
        )
        out, err = await proc.communicate()
        log = [
            ("stdout", out.decode("utf-8", "replace")),
            ("stderr", err.decode("utf-8", "replace")),
        ]
        files = await asyncio.to_thread(_written, work)
        return [(s, t) for s, t in log if t], files


def _workdir(parent: str, text: str) -> Path:
    work = Path(tempfile.mkdtemp(dir=parent))
    (work / "__script__.py").write_text(text, encoding="utf-8")
    return work


def _written(work: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in work.iterdir() if p.is_file() and p.name != "__script__.py"
    }


def user_code(script: str) -> str:
    """The user's code inside a script pushed by nbhelp (base64 in the wrapper)."""
    m = re.search(r'b64decode\("([A-Za-z0-9+/=]*)"\)', script)
    return base64.b64decode(m.group(1)).decode("utf-8", "replace") if m else ""


def kaggle_log(entries: list[tuple[str, str]]) -> str:
    """The log as Kaggle writes it: a JSON array, one entry per line."""
    lines = [
        json.dumps({"stream_name": stream, "time": 1.0 + i, "data": data}, separators=(",", ":"))
        for i, (stream, data) in enumerate(entries)
    ]
    return "[" + "\n,".join(lines) + "]" if lines else ""


def _error(code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=code)


def _html(status: int, retry_after: float | None) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    title = TITLES.get(status, "Error")
    return web.Response(
        status=status, text=HTML_PAGE.format(title=title), content_type="text/html", headers=headers
    )


class ThreadedKaggleFake(KaggleFake):
    """The same fake on its own event loop in a daemon thread (the benchmark measures the bot's
    CPU time on its own thread). Configure it before the runs start, or through ``call``."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start_thread(self) -> ThreadedKaggleFake:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(KaggleFake.start(self))
            ready.set()
            loop.run_forever()
            loop.run_until_complete(KaggleFake.aclose(self))
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-kaggle", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def call(self, fn: Callable[[], Any], delay_s: float = 0.0) -> None:
        """Run ``fn`` on the fake's loop (after ``delay_s``)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.call_later, delay_s, fn)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
