"""The aiohttp application and the :class:`WebServer` the runner starts and stops.

``create_app`` builds the application (routes, error pages, security headers, request
metrics); ``WebServer`` owns it with an adapter-like ``start()`` / ``stop()`` and lets others add
routes before it starts (the Telegram webhook is served here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import jinja2
from aiohttp import web

from bot.core.errors import new_error_id
from bot.metrics import Metrics
from bot.metrics import current as current_metrics
from bot.web.data import CachedStatusData, StatusData
from bot.web.health import Readiness
from bot.web.routes import Handlers, NoPlatform
from bot.web.settings import WebSettings
from bot.web.templates import Site, environment

log = logging.getLogger("nbhelp.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}
APP_KEY = web.AppKey("nbhelp_handlers", Handlers)


def _wants_json(request: web.Request) -> bool:
    p = request.path
    return p.startswith("/api/") or p.endswith(".json") or p in ("/healthz", "/readyz")


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def _error(
    request: web.Request,
    env: jinja2.Environment,
    site: Site,
    status: int,
    message: str,
    *,
    suggestions: Iterable[str] = (),
    error_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    title = TITLES.get(status, "Error" if status >= 500 else "Request refused")
    if _wants_json(request):
        import json

        body: dict[str, Any] = {"error": {"status": status, "message": message}}
        if error_id:
            body["error"]["error_id"] = error_id
        if suggestions:
            body["error"]["did_you_mean"] = list(suggestions)
        return web.Response(
            body=json.dumps(body).encode(),
            status=status,
            content_type="application/json",
            headers={"Cache-Control": "no-store", **(headers or {})},
        )
    html = env.get_template("error.html").render(
        site=site,
        title=title,
        message=message,
        suggestions=list(suggestions),
        error_id=error_id,
    )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _middleware(env: jinja2.Environment, site: Site, metrics: Metrics) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except NoPlatform as exc:
            response = _error(request, env, site, 404, exc.text or "", suggestions=exc.suggestions)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects
                metrics.observe_web(_route_name(request), exc.status)
                raise
            else:
                keep = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
                message = {
                    404: "There is no page at this address.",
                    405: "This address only answers GET.",
                }.get(exc.status, exc.text or exc.reason)
                if exc.status == 400 and exc.text and not exc.text.startswith(str(exc.status)):
                    message = exc.text
                response = _error(request, env, site, exc.status, message, headers=keep)
        except Exception:
            error_id = new_error_id()
            log.exception("error %s serving %s %s", error_id, request.method, _route_name(request))
            response = _error(
                request, env, site, 500, "Something went wrong on our side.", error_id=error_id
            )
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if response.content_type in ("text/html", "image/svg+xml"):
            response.headers.setdefault("Content-Security-Policy", CSP)
        metrics.observe_web(_route_name(request), response.status)
        return response

    return guard


def create_app(
    settings: WebSettings,
    data: StatusData,
    *,
    metrics: Metrics | None = None,
    readiness: Readiness | None = None,
    clock: Callable[[], float] = time.time,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    hello_route: bool = False,
) -> web.Application:
    """The web application. ``data`` is wrapped so concurrent reads share one (see data.py)."""
    metrics = metrics or current_metrics()
    cached = (
        data if isinstance(data, CachedStatusData) else CachedStatusData(data, settings.cache_s)
    )
    readiness = readiness or Readiness(
        cached, sweep_max_age_s=settings.ready_sweep_max_age_s, clock=clock
    )
    env = environment()
    h = Handlers(settings, cached, env, metrics, readiness, clock)
    app = web.Application(middlewares=[_middleware(env, h.site, metrics)], client_max_size=1 << 20)
    app[APP_KEY] = h
    app.add_routes(h.routes())
    if hello_route:
        app.add_routes([web.get("/hello", h.hello)])
    app.add_routes(list(extra_routes))
    return app


class WebServer:
    """The web side's lifecycle, like an adapter's: ``await start()``, ``await stop()``.

    Add routes (e.g. the Telegram webhook's ``web.post(path, handler)``) with
    :meth:`add_routes` before :meth:`start`.
    """

    name = "web"

    def __init__(
        self,
        settings: WebSettings,
        data: StatusData,
        *,
        metrics: Metrics | None = None,
        readiness: Readiness | None = None,
        clock: Callable[[], float] = time.time,
        hello_route: bool = False,
    ) -> None:
        self.settings = settings
        self.app = create_app(
            settings,
            data,
            metrics=metrics,
            readiness=readiness,
            clock=clock,
            hello_route=hello_route,
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        if self._runner is not None:
            raise RuntimeError("add routes before the web server starts")
        self.app.add_routes(list(routes))

    @property
    def url(self) -> str:
        """The base URL this process can reach the server on (``http://127.0.0.1:PORT``)."""
        if self.port is None:
            raise RuntimeError("the web server is not started")
        host = self.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self.settings.shutdown_timeout_s,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("web: serving on %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("web: stopped")
