"""The request handlers: status page, Statuspage-shaped API, feeds, badges, health, metrics.

Read-only and public: nothing here exposes a chat, a user, a token, the kernel pool or an
admin action. Every platform id from a URL is checked against the knowledge base before use,
query parameters are parsed with bounds, and errors never echo what was sent.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
import time
from collections.abc import Callable
from typing import Any

import jinja2
from aiohttp import web

from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from bot.web import api, badges, feed
from bot.web.charts import latency_chart
from bot.web.data import Overview, PlatformDetail, StatusData
from bot.web.health import Readiness, loop_lag_ms
from bot.web.settings import WebSettings
from bot.web.templates import CSS, CSS_PATH, FAVICON, Site
from knowledge.schema import ID_RE

HOST_RE = re.compile(
    r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$"
)
SPANS = ("24h", "7d")
HTML = "text/html"
NO_STORE = {"Cache-Control": "no-store"}
RECENT_ON_INDEX = 10  # past incidents on the first page; /incidents lists the rest


class BadParam(web.HTTPBadRequest):
    """A query parameter out of its bounds; the text is ours, never the value sent."""


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not lo <= int(raw) <= hi:
        raise BadParam(text=f"{name} must be a whole number from {lo} to {hi}")
    return int(raw)


def choice_param(request: web.Request, name: str, choices: tuple[str, ...]) -> str:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return choices[0]
    if raw not in choices:
        raise BadParam(text=f"{name} must be one of {', '.join(choices)}")
    return raw


class Handlers:
    def __init__(
        self,
        settings: WebSettings,
        data: StatusData,
        env: jinja2.Environment,
        metrics: Metrics,
        readiness: Readiness,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.data = data
        self.env = env
        self.metrics = metrics
        self.readiness = readiness
        self.clock = clock
        self.site = Site(title=settings.title)
        self.aliases: dict[str, str] = {}
        for pid, p in data.platforms.items():
            for name in (pid, p.name.lower(), *p.aliases):
                key = name.strip().lower().replace(" ", "-")
                if ID_RE.fullmatch(key):
                    self.aliases.setdefault(key, pid)
        # Rendered pages, reused while the data they came from is the same object (the data
        # layer's cache decides freshness). Keys are routes, not anything a client sends.
        self._pages: dict[tuple[str, ...], tuple[object, bytes, bytes]] = {}

    # -- helpers --------------------------------------------------------------------------------
    def base_url(self, request: web.Request) -> str:
        if self.settings.public_url is not None:
            return str(self.settings.public_url).rstrip("/") + "/"
        host = request.host if HOST_RE.match(request.host or "") else "localhost"
        scheme = "https" if request.scheme == "https" else "http"
        return f"{scheme}://{host}/"

    def platform_id(self, request: web.Request) -> str:
        raw = request.match_info.get("platform", "")
        if raw in self.data.platforms:
            return raw
        key = raw.strip().lower()
        if ID_RE.fullmatch(key) and key in self.aliases:
            resource = request.match_info.route.resource
            to = resource.url_for(platform=self.aliases[key]) if resource else None
            raise web.HTTPMovedPermanently(str(to) if to else f"/p/{self.aliases[key]}")
        close = difflib.get_close_matches(key, list(self.aliases), n=3, cutoff=0.6)
        raise NoPlatform(list(dict.fromkeys(self.aliases[c] for c in close)))

    def cache_headers(self) -> dict[str, str]:
        return {"Cache-Control": f"public, max-age={int(self.settings.cache_s)}"}

    def json(
        self, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            status=status,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*", **(headers or self.cache_headers())},
        )

    def page(
        self, request: web.Request, key: tuple[str, ...], source: object, render: Callable[[], str]
    ) -> web.Response:
        hit = self._pages.get(key)
        if hit is None or hit[0] is not source:
            raw = render().encode()
            hit = (source, raw, gzip.compress(raw, 6))
            if len(self._pages) > 128:
                self._pages.clear()
            self._pages[key] = hit
        headers = {**self.cache_headers(), "Vary": "Accept-Encoding"}
        body = hit[1]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body = hit[2]
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, content_type=HTML, charset="utf-8", headers=headers)

    @staticmethod
    def overall(o: Overview) -> dict[str, str]:
        if o.offline:
            return {
                "status": "unknown",
                "text": "Status unknown: this bot cannot reach the internet",
            }
        by: dict[str, list[str]] = {}
        for p in o.platforms:
            by.setdefault(p.status, []).append(p.view.name)
        if by.get("down"):
            names = ", ".join(by["down"])
            n = len(by["down"])
            return {"status": "down", "text": f"{n} platform{'s' if n > 1 else ''} down: {names}"}
        bad = by.get("degraded", []) + by.get("maintenance", [])
        if bad:
            return {"status": "degraded", "text": f"Some problems: {', '.join(bad)}"}
        if by.get("up"):
            return {"status": "up", "text": "All monitored platforms are up"}
        return {"status": "unknown", "text": "No checks yet"}

    # -- pages ------------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        return self.page(
            request,
            ("index",),
            o,
            lambda: self.env.get_template("index.html").render(
                site=self.site, o=o, overall=self.overall(o), recent=RECENT_ON_INDEX
            ),
        )

    async def incidents_page(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        return self.page(
            request,
            ("incidents",),
            o,
            lambda: self.env.get_template("incidents.html").render(site=self.site, o=o),
        )

    async def _detail(self, request: web.Request, span: str = "24h") -> PlatformDetail:
        pid = self.platform_id(request)
        d = await self.data.platform(pid, span)
        if d is None:  # the knowledge base changed under us
            raise NoPlatform([])
        return d

    async def platform(self, request: web.Request) -> web.Response:
        span = choice_param(request, "span", SPANS)
        d = await self._detail(request, span)
        return self.page(
            request,
            ("platform", d.status.id, span),
            d,
            lambda: self.env.get_template("platform.html").render(
                site=self.site,
                d=d,
                p=d.status,
                v=d.status.view,
                chart=latency_chart(d.series, d.now, d.span),
            ),
        )

    # -- Statuspage v2 ----------------------------------------------------------------------------
    async def summary(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        return self.json(api.summary(o, self.settings.title, self.base_url(request)))

    async def status(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        base = self.base_url(request)
        return self.json(
            {"page": api.page(self.settings.title, base, o.updated_at), "status": api.status(o)}
        )

    async def components(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        return self.json(api.components_body(o, self.settings.title, self.base_url(request)))

    async def incidents(self, request: web.Request) -> web.Response:
        limit = int_param(request, "limit", self.settings.incidents_limit, 1, 500)
        o = await self.data.overview()
        incs = await self.data.incidents(None, limit)
        return self.json(api.incidents_body(o, incs, self.settings.title, self.base_url(request)))

    async def unresolved(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        return self.json(
            api.incidents_body(o, o.ongoing, self.settings.title, self.base_url(request))
        )

    # -- v1 -----------------------------------------------------------------------------------------
    async def platforms_v1(self, request: web.Request) -> web.Response:
        o = await self.data.overview()
        return self.json(api.platforms_v1(o, self.base_url(request)))

    async def platform_v1(self, request: web.Request) -> web.Response:
        d = await self._detail(request)
        return self.json(api.platform_v1(d, self.base_url(request)))

    # -- feeds and badges -------------------------------------------------------------------------
    async def feed_all(self, request: web.Request) -> web.Response:
        limit = int_param(request, "limit", self.settings.incidents_limit, 1, 500)
        incs = await self.data.incidents(None, limit)
        base = self.base_url(request)
        body = feed.atom(
            f"{self.settings.title}: incidents", f"{base}feed.atom", base, incs, self.clock()
        )
        return web.Response(
            body=body,
            content_type="application/atom+xml",
            charset="utf-8",
            headers=self.cache_headers(),
        )

    async def feed_platform(self, request: web.Request) -> web.Response:
        pid = self.platform_id(request)
        limit = int_param(request, "limit", self.settings.incidents_limit, 1, 500)
        incs = await self.data.incidents(pid, limit)
        base = self.base_url(request)
        name = self.data.platforms[pid].name
        body = feed.atom(f"{name}: incidents", f"{base}p/{pid}/feed.atom", base, incs, self.clock())
        return web.Response(
            body=body,
            content_type="application/atom+xml",
            charset="utf-8",
            headers=self.cache_headers(),
        )

    async def _badge_status(self, request: web.Request) -> tuple[str, str]:
        pid = self.platform_id(request)
        o = await self.data.overview()
        p = o.get(pid)
        status = p.status if p is not None else "unknown"
        return self.data.platforms[
            pid
        ].name, "retired" if p is not None and p.view.retired else status

    async def badge_svg(self, request: web.Request) -> web.Response:
        name, status = await self._badge_status(request)
        return web.Response(
            body=badges.svg(name, status),
            content_type="image/svg+xml",
            headers={**self.cache_headers(), "Access-Control-Allow-Origin": "*"},
        )

    async def badge_json(self, request: web.Request) -> web.Response:
        name, status = await self._badge_status(request)
        return self.json(badges.shields(name, status))

    # -- operations ---------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return self.json({"status": "ok", "loop_lag_ms": await loop_lag_ms()}, headers=NO_STORE)

    async def readyz(self, request: web.Request) -> web.Response:
        ready, body = await self.readiness.body()
        return self.json(body, status=200 if ready else 503, headers=NO_STORE)

    async def metrics_route(self, request: web.Request) -> web.Response:
        try:
            o = await self.data.overview()
        except Exception:  # the exposition still answers when the store does not
            pass
        else:
            self.metrics.set_verdicts((p.id, p.status) for p in o.platforms)
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE},
        )

    # -- static -----------------------------------------------------------------------------------
    async def css(self, request: web.Request) -> web.Response:
        return web.Response(
            body=CSS,
            content_type="text/css",
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(
            body=FAVICON,
            content_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def hello(self, request: web.Request) -> web.Response:
        """A static reply, for the benchmark's baseline (not routed unless asked for)."""
        return web.Response(text="hello")

    def routes(self) -> list[web.RouteDef]:
        r = [
            web.get("/", self.index),
            web.get("/p/{platform}", self.platform),
            web.get("/incidents", self.incidents_page),
            web.get("/p/{platform}/feed.atom", self.feed_platform),
            web.get("/feed.atom", self.feed_all),
            web.get("/api/v2/summary.json", self.summary),
            web.get("/api/v2/status.json", self.status),
            web.get("/api/v2/components.json", self.components),
            web.get("/api/v2/incidents.json", self.incidents),
            web.get("/api/v2/incidents/unresolved.json", self.unresolved),
            web.get("/api/v1/platforms", self.platforms_v1),
            web.get("/api/v1/platforms/{platform}", self.platform_v1),
            web.get("/badge/{platform}.svg", self.badge_svg),
            web.get("/badge/{platform}.json", self.badge_json),
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get(CSS_PATH, self.css),
            web.get("/favicon.svg", self.favicon),
            web.get("/favicon.ico", self.favicon),
        ]
        if self.settings.metrics_enabled:
            r.append(web.get("/metrics", self.metrics_route))
        return r


class NoPlatform(web.HTTPNotFound):
    """An unknown platform id; carries did-you-mean ids (known ids only, never the input)."""

    def __init__(self, suggestions: list[str]) -> None:
        super().__init__(text="No platform with that id.")
        self.suggestions = suggestions
