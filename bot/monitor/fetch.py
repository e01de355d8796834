"""One shared HTTP client: bounded concurrency, a wall budget per fetch, retries, a feed cache.

Every failure comes back as a :class:`FetchResult` naming the step that failed (DNS, connect,
TLS, HTTP, timeout); nothing here raises for a network fault.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from bot.monitor.evidence import FailedStep
from bot.monitor.settings import MonitorSettings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    fetched_at: float
    status: int | None = None
    body: bytes = b""
    content_type: str = ""
    latency_ms: float | None = None
    failed_step: FailedStep | None = None
    error: str | None = None  # short human text of a failure before any HTTP status
    attempts: int = 1
    truncated: bool = False
    definitive: bool = False  # a failure that a retry cannot fix (the name does not exist)
    cap: int = 0  # the byte cap this fetch ran under
    retry_at: float | None = None  # the server said not to ask again before this (clock time)
    rate_limited: bool = False  # 429, or a 403 with GitHub's rate-limit headers or message

    @property
    def host(self) -> str:
        return host_of(self.url)

    @property
    def answered(self) -> bool:
        return self.status is not None


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


EAI_NODATA = getattr(socket, "EAI_NODATA", -5)


def _no_such_name(exc: BaseException) -> bool:
    return any(
        isinstance(e, socket.gaierror) and e.errno in (socket.EAI_NONAME, EAI_NODATA)
        for e in _chain(exc)
    )


def classify(exc: BaseException, url: str, budget_s: float) -> tuple[FailedStep, str]:
    """Map an exception from one fetch to the failed step and a short human line."""
    host = host_of(url)
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout", f"no answer from {host} within {budget_s:g} s"
    if isinstance(exc, httpx.TooManyRedirects):
        return "http", f"redirect loop at {host}"
    if any(isinstance(e, socket.gaierror) for e in chain) or "name or service not known" in text:
        return "dns", f"DNS lookup failed for {host}"
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain) or any(
        w in text for w in ("ssl", "certificate", "tls")
    ):
        return "tls", f"TLS handshake with {host} failed"
    if isinstance(exc, httpx.ConnectError):
        refused = any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text
        return "connect", f"connection to {host} {'refused' if refused else 'failed'}"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return "connect", f"connection to {host} dropped"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "http", f"bad URL {url}"
    return "http", f"request to {host} failed ({type(exc).__name__})"


class Fetcher:
    """Owns (or borrows) the single httpx client every source check goes through."""

    def __init__(
        self,
        settings: MonitorSettings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._owns = client is None
        self.client = client or httpx.AsyncClient(
            headers={"User-Agent": settings.user_agent},
            follow_redirects=True,
            max_redirects=settings.max_redirects,
            trust_env=settings.trust_env,
            limits=httpx.Limits(
                max_connections=settings.max_concurrency,
                max_keepalive_connections=min(20, settings.max_concurrency),
            ),
        )
        self.clock = clock
        self.sleep = sleep
        self._sem = asyncio.Semaphore(settings.max_concurrency)
        self._cache: dict[str, FetchResult] = {}
        self._inflight: dict[str, asyncio.Task[FetchResult]] = {}
        self._control: tuple[float, bool] | None = None
        self.requests = 0  # attempts made (for tests and the benchmark)

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._owns:
            await self.client.aclose()

    def clear_cache(self) -> None:
        self._cache.clear()
        self._control = None

    def _forget(self, url: str, _task: object) -> None:
        self._inflight.pop(url, None)

    async def get(
        self,
        url: str,
        *,
        cache: bool = False,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> FetchResult:
        """GET ``url`` (bodies capped at ``max_bytes``, default ``settings.max_body_bytes``)."""
        if not cache:
            return await self._get_retrying(url, headers, max_bytes)
        hit = self._cache.get(url)
        if hit is not None and self.clock() - hit.fetched_at < self.settings.feed_cache_s:
            return hit
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.ensure_future(self._get_retrying(url, headers, max_bytes))
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._forget, url))
        result = await asyncio.shield(task)
        if result.answered:
            self._cache[url] = result
        return result

    async def _get_retrying(
        self, url: str, headers: dict[str, str] | None, max_bytes: int | None = None
    ) -> FetchResult:
        s = self.settings
        deadline = time.perf_counter() + s.timeout_s  # one wall budget for all attempts
        result = await self._attempt(url, headers, s.timeout_s, max_bytes)
        attempts = 1
        while attempts <= s.retries and self._retryable(result):
            delays = s.retry_delays_s or (0.0,)
            delay = delays[min(attempts - 1, len(delays) - 1)]
            left = deadline - time.perf_counter() - delay
            if left < min(0.5, s.timeout_s / 4):  # no time for a meaningful attempt
                break
            if delay > 0:
                await self.sleep(delay)
            result = await self._attempt(url, headers, left, max_bytes)
            attempts += 1
        if attempts > 1:
            result = replace(result, attempts=attempts)
        return result

    def _retryable(self, r: FetchResult) -> bool:
        if r.failed_step == "timeout" or r.definitive:  # budget spent / NXDOMAIN: no retry
            return False
        if r.rate_limited and r.retry_at is not None and r.retry_at - r.fetched_at > 5:
            return False  # the server named a time: asking again now only spends quota
        if r.status is None:
            if self._control is not None and not self._control[1]:
                fresh = self.clock() - self._control[0] < self.settings.control_cache_s
                if fresh:  # this machine is offline: retrying only delays the answer
                    return False
            return r.failed_step in ("dns", "connect", "tls")
        return r.status >= 500 or r.status == 429

    async def _attempt(
        self,
        url: str,
        headers: dict[str, str] | None,
        budget_s: float,
        max_bytes: int | None = None,
    ) -> FetchResult:
        s = self.settings
        cap = max_bytes or s.max_body_bytes
        hdrs = {"User-Agent": s.user_agent, **(headers or {})}
        async with self._sem:
            self.requests += 1
            at = self.clock()
            start = time.perf_counter()
            try:
                async with asyncio.timeout(budget_s):
                    async with self.client.stream(
                        "GET", url, headers=hdrs, timeout=httpx.Timeout(budget_s)
                    ) as resp:
                        body, truncated = await _read_capped(resp, cap)
                        latency = (time.perf_counter() - start) * 1000
                        limited, wait = rate_limit(resp.status_code, resp.headers, body, now=at)
                        return FetchResult(
                            url=url,
                            fetched_at=at,
                            status=resp.status_code,
                            body=body,
                            content_type=resp.headers.get("content-type", ""),
                            latency_ms=round(latency, 1),
                            truncated=truncated,
                            cap=cap,
                            retry_at=None if wait is None else at + wait,
                            rate_limited=limited,
                        )
            except (httpx.HTTPError, OSError, TimeoutError, ssl.SSLError) as exc:
                step, line = classify(exc, url, budget_s)
                latency = (time.perf_counter() - start) * 1000
                return FetchResult(
                    url=url,
                    fetched_at=at,
                    latency_ms=round(latency, 1) if step == "timeout" else None,
                    failed_step=step,
                    error=line,
                    definitive=_no_such_name(exc),
                )

    async def reachable(self) -> bool | None:
        """Can this machine reach the internet? None when no control URL is configured."""
        urls = self.settings.control_urls
        if not urls:
            return None
        now = self.clock()
        if self._control is not None and now - self._control[0] < self.settings.control_cache_s:
            return self._control[1]
        tasks = [
            asyncio.ensure_future(self._attempt(u, None, self.settings.control_timeout_s))
            for u in urls
        ]
        ok = False
        try:
            for fut in asyncio.as_completed(tasks):
                if (await fut).answered:
                    ok = True
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._control = (now, ok)
        return ok


def rate_limit(
    status: int, headers: httpx.Headers, body: bytes, *, now: float | None = None
) -> tuple[bool, float | None]:
    """Is this answer a rate limit, and how many seconds until asking again makes sense?

    429 always; 403 when GitHub's headers say the quota is spent (``x-ratelimit-remaining: 0``)
    or its body says "rate limit". The wait comes from ``Retry-After`` (seconds or a date) or
    ``x-ratelimit-reset`` (epoch seconds).
    """
    remaining = headers.get("x-ratelimit-remaining")
    limited = status == 429 or (
        status == 403 and (remaining == "0" or b"rate limit" in body[:2000].lower())
    )
    if not limited:
        return False, None
    wall = time.time() if now is None else now
    wait: float | None = None
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            try:
                wait = parsedate_to_datetime(retry_after).timestamp() - wall
            except (TypeError, ValueError):
                wait = None
    reset = headers.get("x-ratelimit-reset")
    if wait is None and reset:
        try:
            wait = float(reset) - wall
        except ValueError:
            wait = None
    return True, None if wait is None else max(0.0, min(wait, 86400.0))


async def _read_capped(resp: httpx.Response, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= cap:
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False
