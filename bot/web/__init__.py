"""The web side: a public status page, a Statuspage-shaped JSON API, Atom feeds, badges,
``/healthz``, ``/readyz`` and ``/metrics``, on one aiohttp server in the bot's process.

Modules: ``settings`` (WebSettings, light), ``data`` (what pages read, via ``store.call``),
``charts`` (SVG geometry), ``templates`` (jinja2, autoescaped), ``api`` (JSON bodies),
``feed`` (Atom), ``badges``, ``health`` (readiness), ``routes`` (handlers), ``app``
(``create_app``, ``WebServer``), ``serve`` (what the CLI and the runner call).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "WebSettings": "bot.web.settings",
    "WebServer": "bot.web.app",
    "create_app": "bot.web.app",
    "Readiness": "bot.web.health",
    "Check": "bot.web.health",
    "StatusData": "bot.web.data",
    "StoreStatusData": "bot.web.data",
    "build_web": "bot.web.serve",
    "serve_web": "bot.web.serve",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
