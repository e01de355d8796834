"""One checker per status-source kind; each turns a fetch into one :class:`Evidence`.

Faults (HTML instead of JSON, truncated JSON, redirect loops, timeouts, DNS, refused
connections, TLS errors) become evidence such as "status feed unreadable", never exceptions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from bot.monitor.evidence import Evidence, FailedStep, Signal
from bot.monitor.fetch import Fetcher, FetchResult, host_of
from knowledge.schema import StatusSource

log = logging.getLogger(__name__)

__all__ = ["Checker", "Evidence", "Signal"]

KIND_LABEL = {
    "http": "Probe",
    "statuspage": "Statuspage",
    "google_cloud": "Google Cloud",
    "google_workspace": "Google Workspace",
    "betterstack": "Better Stack",
    "binder_health": "Binder health",
    "github_issues": "GitHub",
}
STATUSPAGE_COMPONENT: dict[str, Signal] = {
    "operational": "up",
    "degraded_performance": "degraded",
    "partial_outage": "degraded",
    "major_outage": "down",
    "under_maintenance": "maintenance",
}
STATUSPAGE_INDICATOR: dict[str, Signal] = {
    "none": "up",
    "minor": "degraded",
    "major": "down",
    "critical": "down",
    "maintenance": "maintenance",
}
BETTERSTACK_STATE: dict[str, Signal] = {
    "operational": "up",
    "degraded": "degraded",
    "downtime": "down",
    "maintenance": "maintenance",
}
GOOGLE_IMPACT: dict[str, Signal] = {
    "SERVICE_OUTAGE": "down",
    "SERVICE_DISRUPTION": "degraded",
    "SERVICE_INFORMATION": "up",
}
DONE_INCIDENT = {"resolved", "postmortem", "completed"}
ACTIVE_MAINTENANCE = {"in_progress", "verifying"}
OUTAGE_WORDS = re.compile(r"\b(outage|down|unavailable|not working|cannot connect)\b", re.I)


class FeedError(Exception):
    """The feed answered, but not with what we can read."""

    def __init__(self, why: str, step: FailedStep = "parse") -> None:
        super().__init__(why)
        self.why = why
        self.step = step


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "?"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def fmt_since(ts: float, now: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if now - ts < 20 * 3600:
        return dt.strftime("%H:%M UTC")
    return dt.strftime("%d %b %H:%M UTC").lstrip("0")


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def shorten(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def decode_json(r: FetchResult) -> Any:
    """The JSON body of a fetch, or :class:`FeedError` saying why not."""
    if r.truncated:
        raise FeedError("response too large")
    body = r.body.lstrip()
    if "html" in r.content_type.lower() or body[:1] == b"<":
        raise FeedError("HTML instead of JSON")
    if not body:
        raise FeedError("empty response")
    try:
        return json.loads(body)
    except ValueError:
        raise FeedError("truncated or invalid JSON") from None


def _dig(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


Handler = Callable[["Checker", StatusSource], Awaitable[Evidence]]


class Checker:
    """Checks status sources through one :class:`Fetcher` (one shared httpx client)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self.settings = fetcher.settings

    async def check(self, src: StatusSource) -> Evidence:
        try:
            return await _HANDLERS[src.kind](self, src)
        except Exception as exc:  # a checker bug must never reach the chat
            log.exception("checking %s failed", src.url)
            return self._ev(
                src,
                "unknown",
                f"{_label(src)}: check failed ({type(exc).__name__})",
                failed_step="parse",
                readable=False,
            )

    async def check_many(self, sources: Iterable[StatusSource]) -> list[Evidence]:
        return list(await asyncio.gather(*(self.check(s) for s in sources)))

    # -- helpers -------------------------------------------------------------------------
    def _ev(self, src: StatusSource, signal: Signal, line: str, **kw: Any) -> Evidence:
        kw.setdefault("checked_at", self.fetcher.clock())
        return Evidence(
            source=src.name or _label(src),
            kind=src.kind,
            official=src.official,
            signal=signal,
            line=line,
            url=str(src.url),
            **kw,
        )

    def _unreadable(self, src: StatusSource, err: FeedError, r: FetchResult) -> Evidence:
        return self._ev(
            src,
            "unknown",
            f"{_label(src)}: status feed unreadable ({err.why})",
            failed_step=err.step,
            readable=False,
            latency_ms=r.latency_ms,
            checked_at=r.fetched_at,
        )

    async def _guarded(
        self,
        src: StatusSource,
        parse: Callable[[Any, FetchResult], Evidence],
        headers: dict[str, str] | None = None,
        r: FetchResult | None = None,
    ) -> Evidence:
        """Fetch an official feed (cached), decode it and parse it, or say why it is unreadable."""
        if r is None:
            r = await self.fetcher.get(str(src.url), cache=True, headers=headers)
        try:
            if r.status is None:
                raise FeedError(r.error or "no answer", r.failed_step or "connect")
            if r.status >= 400:
                raise FeedError(f"HTTP {r.status}", "http")
            return parse(decode_json(r), r)
        except FeedError as err:
            return self._unreadable(src, err, r)


def _label(src: StatusSource) -> str:
    return KIND_LABEL.get(src.kind, src.kind)


# -- http ---------------------------------------------------------------------------------
async def _http(c: Checker, src: StatusSource) -> Evidence:
    url = str(src.url)
    r = await c.fetcher.get(url)
    host = host_of(url)
    base = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
    if not r.answered:
        return c._ev(
            src,
            "down",
            r.error or f"no answer from {host}",
            failed_step=r.failed_step,
            readable=False,
            **base,
        )
    assert r.status is not None
    retried = f" after {r.attempts} tries" if r.attempts > 1 else ""
    if r.status >= 400:
        return c._ev(
            src, "down", f"HTTP {r.status} from {host}{retried}", failed_step="http", **base
        )
    if src.keyword and src.keyword.lower() not in r.body.decode("utf-8", "replace").lower():
        return c._ev(
            src,
            "down",
            f"HTTP {r.status} from {host} but '{src.keyword}' missing",
            failed_step="http",
            **base,
        )
    if src.degraded_ms is not None and r.latency_ms is not None and r.latency_ms > src.degraded_ms:
        return c._ev(
            src,
            "degraded",
            f"slow: {fmt_ms(r.latency_ms)} from {host} (limit {fmt_ms(src.degraded_ms)})",
            **base,
        )
    return c._ev(src, "up", f"HTTP {r.status} from {host} in {fmt_ms(r.latency_ms)}", **base)


# -- Atlassian Statuspage --------------------------------------------------------------------
def _named(items: Any) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _touches(item: dict[str, Any], component: str | None) -> bool:
    if component is None:
        return True
    comps = _named(item.get("components"))
    return any(str(c.get("name", "")).strip().lower() == component for c in comps)


async def _statuspage(c: Checker, src: StatusSource) -> Evidence:
    def parse(data: Any, r: FetchResult) -> Evidence:
        if not isinstance(data, dict) or not ("status" in data or "components" in data):
            raise FeedError("not a Statuspage feed")
        comp = src.component.strip().lower() if src.component else None
        base: dict[str, Any] = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
        incidents = [
            i
            for i in _named(data.get("incidents"))
            if str(i.get("status", "")).lower() not in DONE_INCIDENT and _touches(i, comp)
        ]
        maint = [
            m
            for m in _named(data.get("scheduled_maintenances"))
            if str(m.get("status", "")).lower() in ACTIVE_MAINTENANCE and _touches(m, comp)
        ]
        if comp is not None:
            match = [
                x
                for x in _named(data.get("components"))
                if not x.get("group")
                and not str(x.get("name", "")).lower().startswith("visit ")
                and str(x.get("name", "")).strip().lower() == comp
            ]
            if not match:
                raise FeedError(f"component '{src.component}' not found")
            raw = str(match[0].get("status", "")).lower()
            signal: Signal = STATUSPAGE_COMPONENT.get(raw, "unknown")
            what = f"{match[0].get('name')} {raw or '?'}"
            line = f"Statuspage: {what}"
        else:
            ind = str(_dig(data, "status", "indicator") or "").lower()
            signal = STATUSPAGE_INDICATOR.get(ind, "unknown")
            desc = _dig(data, "status", "description") or ind or "?"
            line = f"Statuspage {host_of(str(src.url))}: {desc}"
        if signal == "up" and incidents:
            signal = "degraded"
        if maint and signal in ("up", "degraded", "unknown"):
            signal = "maintenance"
        top = (maint if signal == "maintenance" else incidents) or incidents or maint
        if top:
            title = shorten(str(top[0].get("name", "incident")))
            url = top[0].get("shortlink") or None
            return c._ev(
                src, signal, f"{line} — '{title}'", incident_title=title, incident_url=url, **base
            )
        return c._ev(src, signal, line, **base)

    return await c._guarded(src, parse)


# -- Google Cloud / Workspace incidents.json ------------------------------------------------
async def _google(c: Checker, src: StatusSource) -> Evidence:
    label = _label(src)
    wanted = {p.strip().lower() for p in src.products}

    def parse(data: Any, r: FetchResult) -> Evidence:
        if not isinstance(data, list):
            raise FeedError("not an incident list")
        base: dict[str, Any] = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
        ongoing: list[tuple[Signal, float, dict[str, Any]]] = []
        for inc in _named(data):
            if inc.get("end"):
                continue
            titles = {str(p.get("title", "")).lower() for p in _named(inc.get("affected_products"))}
            if wanted and not (titles & wanted):
                continue
            impact = str(inc.get("status_impact", ""))
            sev = str(inc.get("severity", "")).lower()
            signal = GOOGLE_IMPACT.get(impact) or ("down" if sev == "high" else "degraded")
            ongoing.append((signal, parse_time(inc.get("begin")) or r.fetched_at, inc))
        scope = ", ".join(src.products) if src.products else "any product"
        if not ongoing:
            return c._ev(src, "up", f"{label}: no ongoing incident for {scope}", **base)
        ongoing.sort(key=lambda t: (-_sev(t[0]), -t[1]))
        signal, begin, inc = ongoing[0]
        title = shorten(str(inc.get("external_desc") or inc.get("id") or "incident"))
        uri = inc.get("uri")
        url = urljoin(str(src.url), uri) if isinstance(uri, str) and uri else None
        more = f" (+{len(ongoing) - 1} more)" if len(ongoing) > 1 else ""
        word = "information" if signal == "up" else "ongoing incident"
        line = f"{label}: {word} '{title}' since {fmt_since(begin, c.fetcher.clock())}{more}"
        return c._ev(src, signal, line, incident_title=title, incident_url=url, **base)

    return await c._guarded(src, parse)


def _sev(s: Signal) -> int:
    return {"down": 3, "degraded": 2, "up": 1}.get(s, 0)


# -- Better Stack index.json ------------------------------------------------------------------
async def _betterstack(c: Checker, src: StatusSource) -> Evidence:
    def parse(data: Any, r: FetchResult) -> Evidence:
        attrs = _dig(data, "data", "attributes")
        if not isinstance(attrs, dict) or "aggregate_state" not in attrs:
            raise FeedError("no aggregate_state")
        base: dict[str, Any] = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
        name = attrs.get("company_name") or host_of(str(src.url))
        state = str(attrs.get("aggregate_state")).lower()
        if src.component:
            for item in _named(data.get("included") if isinstance(data, dict) else None):
                a = item.get("attributes") or {}
                if (
                    str(a.get("public_name") or a.get("name") or "").lower()
                    == src.component.lower()
                ):
                    name, state = src.component, str(a.get("status", state)).lower()
                    break
        signal: Signal = BETTERSTACK_STATE.get(state, "degraded")
        return c._ev(src, signal, f"Better Stack: {name} {state}", **base)

    return await c._guarded(src, parse)


# -- mybinder.org member /health ------------------------------------------------------------
async def _binder(c: Checker, src: StatusSource) -> Evidence:
    url = str(src.url)
    host = host_of(url)
    r = await c.fetcher.get(url)
    base: dict[str, Any] = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
    if not r.answered:
        return c._ev(
            src,
            "down",
            f"Binder {host}: {r.error}",
            failed_step=r.failed_step,
            readable=False,
            **base,
        )
    try:
        data = decode_json(r)
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise FeedError("no 'ok' field")
    except FeedError as err:
        why = f"HTTP {r.status}, {err.why}" if r.status and r.status >= 400 else err.why
        return c._ev(
            src,
            "down" if (r.status or 0) >= 500 else "unknown",
            f"Binder {host}: health unreadable ({why})",
            failed_step="parse",
            readable=False,
            **base,
        )
    if data["ok"]:
        return c._ev(src, "up", f"Binder {host}: healthy", **base)
    failing = [str(x.get("service", "?")) for x in _named(data.get("checks")) if not x.get("ok")]
    detail = f" (failing: {', '.join(failing[:3])})" if failing else ""
    return c._ev(src, "down", f"Binder {host}: unhealthy{detail}", failed_step="http", **base)


# -- GitHub issues with a label -------------------------------------------------------------
async def _github(c: Checker, src: StatusSource) -> Evidence:
    label = src.label

    def parse(data: Any, r: FetchResult) -> Evidence:
        if not isinstance(data, list):
            raise FeedError("not an issue list")
        base: dict[str, Any] = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
        issues = [
            i
            for i in _named(data)
            if "pull_request" not in i
            and str(i.get("state", "open")) == "open"
            and (
                label is None
                or label.lower()
                in {str(x.get("name", "")).lower() for x in _named(i.get("labels"))}
            )
        ]
        now = c.fetcher.clock()
        max_age = c.settings.announce_max_age_s
        fresh = [i for i in issues if now - (parse_time(i.get("created_at")) or now) <= max_age]
        what = f"'{label}' " if label else ""
        if not fresh:
            older = f" ({len(issues)} older still open)" if issues else ""
            return c._ev(src, "up", f"GitHub: no recent open {what}issue{older}", **base)
        top = fresh[0]
        title = shorten(str(top.get("title", "announcement")))
        signal: Signal = "down" if OUTAGE_WORDS.search(title) else "degraded"
        num = f" (#{top['number']})" if "number" in top else ""
        return c._ev(
            src,
            signal,
            f"GitHub {what}issue open: '{title}'{num}",
            incident_title=title,
            incident_url=top.get("html_url"),
            **base,
        )

    r = await c.fetcher.get(
        str(src.url), cache=True, headers={"Accept": "application/vnd.github+json"}
    )
    if r.status in (403, 429):
        return c._ev(
            src,
            "unknown",
            "GitHub: rate limited, announcements not checked",
            failed_step="http",
            readable=False,
            latency_ms=r.latency_ms,
            checked_at=r.fetched_at,
        )
    return await c._guarded(src, parse, r=r)


_HANDLERS: dict[str, Handler] = {
    "http": _http,
    "statuspage": _statuspage,
    "google_cloud": _google,
    "google_workspace": _google,
    "betterstack": _betterstack,
    "binder_health": _binder,
    "github_issues": _github,
}
