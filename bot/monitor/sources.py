"""One checker per status-source kind; each turns a fetch into :class:`Evidence`.

Faults (HTML instead of JSON, truncated JSON, redirect loops, timeouts, DNS, refused
connections, TLS errors) become evidence such as "status feed unreadable", never exceptions.
What each document *says* is read in :mod:`bot.monitor.readers` (pure, tested on real captures).

A source that answers in the wrong format (HTML, another kind of document, 404) or is rate
limited is logged once and then left alone for a while (``wrong_format_retry_s``, doubling; a
rate limit until the time the server names): its last answer is shown with the next try.
An unverified feed (:attr:`knowledge.schema.StatusSource.trusted`) never drives a verdict on its
own: what it says becomes a hint or news.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.monitor.evidence import Evidence, Signal, Weight
from bot.monitor.fetch import Fetcher, FetchResult, host_of
from bot.monitor.readers import (
    FeedError,
    Finding,
    json_array_prefix,
    read_announcements,
    read_betterstack,
    read_binder,
    read_google,
    read_statuspage,
)
from bot.monitor.readers import fmt_since as fmt_since
from bot.monitor.readers import parse_time as parse_time
from bot.monitor.readers import shorten as shorten
from knowledge.schema import StatusSource

log = logging.getLogger(__name__)

__all__ = ["Checker", "Evidence", "FeedError", "Signal"]

KIND_LABEL = {
    "http": "Probe",
    "statuspage": "Statuspage",
    "google_cloud": "Google Cloud",
    "google_workspace": "Google Workspace",
    "betterstack": "Better Stack",
    "binder_health": "Binder health",
    "github_issues": "GitHub",
}
GONE_STATUSES = {401, 403, 404, 410}  # a wrong or closed URL: asking every few minutes won't help
MAX_BACKOFF_S = 86400.0


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "?"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def decode_json(r: FetchResult) -> Any:
    """The JSON body of a fetch, or :class:`FeedError` saying why not."""
    if r.truncated:
        mb = (r.cap or len(r.body)) / 1e6
        raise FeedError(f"larger than the {mb:g} MB we accept", wrong_format=True)
    body = r.body.lstrip()
    if "html" in r.content_type.lower() or body[:1] == b"<":
        raise FeedError("HTML instead of JSON", wrong_format=True)
    if not body:
        raise FeedError("empty response")
    try:
        return json.loads(body)
    except ValueError:
        raise FeedError("truncated or invalid JSON") from None


@dataclass(frozen=True, slots=True)
class _Quiet:
    """A source left alone until ``until``: why, and when it last answered."""

    until: float
    why: str
    step: str
    at: float
    failures: int


Handler = Callable[["Checker", StatusSource], Awaitable[list[Evidence]]]


class Checker:
    """Checks status sources through one :class:`Fetcher` (one shared httpx client)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self.settings = fetcher.settings
        self._quiet: dict[str, _Quiet] = {}
        self._logged: dict[str, str] = {}  # url -> the unreadable reason last logged

    async def check(self, src: StatusSource) -> Evidence:
        """The source's main evidence (its first; see :meth:`check_source` for all)."""
        return (await self.check_source(src))[0]

    async def check_source(self, src: StatusSource) -> list[Evidence]:
        """Everything one source says: the main evidence first, then hints and news."""
        quiet = self._quiet.get(str(src.url))
        if quiet is not None and self.fetcher.clock() < quiet.until:
            return [self._quiet_evidence(src, quiet)]
        try:
            out = await _HANDLERS[src.kind](self, src)
        except Exception as exc:  # a checker bug must never reach the chat
            log.exception("checking %s failed", src.url)
            out = [
                self._ev(
                    src,
                    "unknown",
                    f"{_label(src)}: check failed ({type(exc).__name__})",
                    failed_step="parse",
                    readable=False,
                )
            ]
        if out and out[0].readable and str(src.url) in self._logged:
            log.info("%s is readable again", src.url)
            del self._logged[str(src.url)]
            self._quiet.pop(str(src.url), None)
        return [self._trust(src, e) for e in out]

    async def check_many(self, sources: Iterable[StatusSource]) -> list[Evidence]:
        found = await asyncio.gather(*(self.check_source(s) for s in sources))
        return [e for evs in found for e in evs]

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

    def _from(self, src: StatusSource, f: Finding, r: FetchResult) -> Evidence:
        return self._ev(
            src,
            f.signal,
            f.line,
            weight=f.weight,
            incident_title=f.incident_title,
            incident_url=f.incident_url,
            readable=f.readable,
            failed_step=f.failed_step,
            latency_ms=r.latency_ms,
            checked_at=r.fetched_at,
        )

    @staticmethod
    def _trust(src: StatusSource, e: Evidence) -> Evidence:
        """An unverified feed's statements are shown, never a verdict on their own."""
        if src.kind == "http" or src.trusted or not e.readable or e.weight != "full":
            return e
        if not src.official and e.is_probe:
            return e
        weight: Weight = "hint" if e.signal in ("degraded", "down") else "info"
        return replace(e, weight=weight, line=f"{e.line} (unverified source)")

    def _unreadable(self, src: StatusSource, err: FeedError, r: FetchResult) -> Evidence:
        self._note(src, err.why, r, wrong_format=err.wrong_format)
        return self._ev(
            src,
            "unknown",
            f"{_label(src)}: status feed unreadable ({err.why})",
            failed_step=err.step,
            readable=False,
            latency_ms=r.latency_ms,
            checked_at=r.fetched_at,
        )

    def _note(
        self, src: StatusSource, why: str, r: FetchResult, *, wrong_format: bool = False
    ) -> None:
        """Log an unreadable source once per reason; leave a wrong-format one alone a while."""
        url = str(src.url)
        if self._logged.get(url) != why:
            log.warning("status source %s (%s) unreadable: %s", url, src.kind, why)
            self._logged[url] = why
        if r.rate_limited:
            wait = (r.retry_at - r.fetched_at) if r.retry_at is not None else None
            until = r.fetched_at + (self.settings.rate_limit_wait_s if wait is None else wait)
            self._quiet[url] = _Quiet(until, why, "http", r.fetched_at, 1)
        elif wrong_format and self.settings.wrong_format_retry_s > 0:
            prev = self._quiet.get(url)
            n = prev.failures + 1 if prev is not None else 1
            delay = min(self.settings.wrong_format_retry_s * 2 ** (n - 1), MAX_BACKOFF_S)
            self._quiet[url] = _Quiet(r.fetched_at + delay, why, "parse", r.fetched_at, n)

    def _quiet_evidence(self, src: StatusSource, q: _Quiet) -> Evidence:
        return self._ev(
            src,
            "unknown",
            f"{_label(src)}: status feed unreadable ({q.why}); next try {_hhmm(q.until)}",
            failed_step="http" if q.step == "http" else "parse",
            readable=False,
            checked_at=q.at,
        )

    async def _guarded(
        self,
        src: StatusSource,
        parse: Callable[[Any, FetchResult], list[Finding]],
        headers: dict[str, str] | None = None,
        r: FetchResult | None = None,
    ) -> list[Evidence]:
        """Fetch an official feed (cached), decode it and parse it, or say why it is unreadable."""
        if r is None:
            r = await self.fetcher.get(
                str(src.url),
                cache=True,
                headers=headers,
                max_bytes=self.settings.body_cap(src.kind),
            )
        try:
            if r.status is None:
                raise FeedError(r.error or "no answer", r.failed_step or "connect")
            if r.rate_limited:
                raise FeedError(f"HTTP {r.status}, rate limited", "http")
            if r.status >= 400:
                raise FeedError(f"HTTP {r.status}", "http", wrong_format=r.status in GONE_STATUSES)
            return [self._from(src, f, r) for f in parse(decode_json(r), r)]
        except FeedError as err:
            return [self._unreadable(src, err, r)]


def _label(src: StatusSource) -> str:
    return KIND_LABEL.get(src.kind, src.kind)


# -- http ---------------------------------------------------------------------------------
async def _http(c: Checker, src: StatusSource) -> list[Evidence]:
    url = str(src.url)
    r = await c.fetcher.get(url)
    host = host_of(url)
    base = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
    if not r.answered:
        return [
            c._ev(
                src,
                "down",
                r.error or f"no answer from {host}",
                failed_step=r.failed_step,
                readable=False,
                **base,
            )
        ]
    assert r.status is not None
    retried = f" after {r.attempts} tries" if r.attempts > 1 else ""
    if r.status >= 400:
        line = f"HTTP {r.status} from {host}{retried}"
        return [c._ev(src, "down", line, failed_step="http", **base)]
    if src.keyword and src.keyword.lower() not in r.body.decode("utf-8", "replace").lower():
        line = f"HTTP {r.status} from {host} but '{src.keyword}' missing"
        return [c._ev(src, "down", line, failed_step="http", **base)]
    if src.degraded_ms is not None and r.latency_ms is not None and r.latency_ms > src.degraded_ms:
        line = f"slow: {fmt_ms(r.latency_ms)} from {host} (limit {fmt_ms(src.degraded_ms)})"
        return [c._ev(src, "degraded", line, **base)]
    line = f"HTTP {r.status} from {host} in {fmt_ms(r.latency_ms)}"
    return [c._ev(src, "up", line, **base)]


# -- Atlassian Statuspage --------------------------------------------------------------------
async def _statuspage(c: Checker, src: StatusSource) -> list[Evidence]:
    host = host_of(str(src.url))
    return await c._guarded(src, lambda data, _r: read_statuspage(data, src.component, host))


# -- Google Cloud / Workspace incidents.json ------------------------------------------------
async def _google(c: Checker, src: StatusSource) -> list[Evidence]:
    label = _label(src)
    cap = c.settings.body_cap(src.kind)
    r = await c.fetcher.get(str(src.url), cache=True, max_bytes=cap)
    if r.answered and r.truncated and (r.status or 0) < 400:
        # Past the cap: Google lists the newest incidents first, so read what did arrive.
        items, ok = json_array_prefix(r.body)
        if not ok:
            return [
                c._unreadable(
                    src,
                    FeedError(f"larger than the {cap / 1e6:g} MB we accept", wrong_format=True),
                    r,
                )
            ]
        f = read_google(items, src.products, label, str(src.url), c.fetcher.clock(), partial_of=cap)
        if not f.readable:
            c._note(src, f"larger than the {cap / 1e6:g} MB we accept", r)
        return [c._from(src, f, r)]

    def parse(data: Any, r: FetchResult) -> list[Finding]:
        if not isinstance(data, list):
            raise FeedError("not an incident list", wrong_format=True)
        return [read_google(data, src.products, label, str(src.url), c.fetcher.clock())]

    return await c._guarded(src, parse, r=r)


# -- Better Stack index.json ------------------------------------------------------------------
async def _betterstack(c: Checker, src: StatusSource) -> list[Evidence]:
    host = host_of(str(src.url))
    return await c._guarded(src, lambda data, _r: [read_betterstack(data, src.component, host)])


# -- mybinder.org member /health ------------------------------------------------------------
async def _binder(c: Checker, src: StatusSource) -> list[Evidence]:
    url = str(src.url)
    host = host_of(url)
    r = await c.fetcher.get(url)
    base: dict[str, Any] = {"latency_ms": r.latency_ms, "checked_at": r.fetched_at}
    if not r.answered:
        line = f"Binder {host}: {r.error}"
        return [c._ev(src, "down", line, failed_step=r.failed_step, readable=False, **base)]
    try:
        f = read_binder(decode_json(r), host)
    except FeedError as err:
        why = f"HTTP {r.status}, {err.why}" if r.status and r.status >= 400 else err.why
        c._note(src, why, r)
        return [
            c._ev(
                src,
                "down" if (r.status or 0) >= 500 else "unknown",
                f"Binder {host}: health unreadable ({why})",
                failed_step="parse",
                readable=False,
                **base,
            )
        ]
    return [c._from(src, f, r)]


# -- GitHub issues with a label -------------------------------------------------------------
async def _github(c: Checker, src: StatusSource) -> list[Evidence]:
    s = c.settings

    def parse(data: Any, r: FetchResult) -> list[Finding]:
        return read_announcements(
            data, src.label, c.fetcher.clock(), s.announce_max_age_s, s.announce_news_max_age_s
        )

    r = await c.fetcher.get(
        str(src.url), cache=True, headers={"Accept": "application/vnd.github+json"}
    )
    if r.rate_limited:
        c._note(src, "rate limited", r)
        quiet = c._quiet.get(str(src.url))
        when = f" until {_hhmm(quiet.until)}" if quiet is not None else ""
        return [
            c._ev(
                src,
                "unknown",
                f"GitHub: rate limited, announcements not checked{when}",
                failed_step="http",
                readable=False,
                latency_ms=r.latency_ms,
                checked_at=r.fetched_at,
            )
        ]
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
