"""The jinja2 environment (autoescaping on for every template) and the page's filters.

The stylesheet is served under a content-hashed name so that browsers keep it for a year and
the first page costs one small HTML document plus one small stylesheet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import jinja2

from bot.monitor.view import pct
from bot.text import ago, duration
from bot.web.charts import runs, sparkline
from bot.web.data import safe_url

CSS: bytes = resources.files("bot.web").joinpath("static/style.css").read_bytes()
CSS_PATH = f"/static/style.{hashlib.sha256(CSS).hexdigest()[:12]}.css"
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<circle cx="8" cy="8" r="7" fill="#1a7f37"/></svg>'
)


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc(ts: float | None) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def until(end: float | None, start: float) -> str:
    """An incident's end: ``"09:23 UTC"`` on its start's date, else the full date and time."""
    if end is None:
        return "?"
    same = datetime.fromtimestamp(end, UTC).date() == datetime.fromtimestamp(start, UTC).date()
    return datetime.fromtimestamp(end, UTC).strftime("%H:%M UTC") if same else utc(end)


@dataclass(frozen=True, slots=True)
class Site:
    title: str
    css: str = CSS_PATH


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.web", "templates"),
        autoescape=True,  # every template, whatever its name
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    env.filters.update(
        age=ago,
        pct=pct,
        iso=iso,
        utc=utc,
        until=until,
        duration=duration,
        runs=runs,
        sparkline=sparkline,
        safe_url=lambda u: safe_url(None if u is None else str(u)) or "",
    )
    return env
