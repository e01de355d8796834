"""Kaggle's REST API over httpx: the few kernel calls the GPU backend needs, capped and retried.

Not the ``kaggle`` package: it authenticates at import, calls ``exit(1)`` without credentials and
has no timeouts. Every call is ``POST <base_url>/v1/<Service>/<Method>`` with a camelCase JSON
body and ``Authorization: Bearer <token>``, the style of ``kagglesdk`` 0.1.38 (PyPI, read
2026: ``kaggle_http_client.py: _get_request_url`` builds ``{endpoint}/v1/{service}/{method}``
with ``https://api.kaggle.com`` for production, and posts ``to_dict(request)``, whose keys are
the ``json_name`` of each ``FieldMetadata``). Answers with ``{"code": >= 400, "message": …}``
are errors even under HTTP 200, as ``KaggleHttpClient._prepare_response`` treats them.

Endpoints (service ``kernels.KernelsApiService`` unless named), request → answer fields used:

========================================  ================================================
``SaveKernel``                            ``slug`` ("owner/slug"), ``newTitle``, ``text``,
                                          ``language``, ``kernelType``, ``isPrivate``,
                                          ``enableGpu``, ``enableInternet``,
                                          ``machineShape``, ``sessionTimeoutSeconds`` →
                                          ``ref``, ``url``, ``versionNumber``, ``error``
``GetKernel``                             ``userName``, ``kernelSlug`` → 200 when it exists
``GetKernelSessionStatus``                ``userName``, ``kernelSlug`` → ``status``
                                          (KernelWorkerStatus), ``failureMessage``
``ListKernelSessionOutput``               ``userName``, ``kernelSlug``, ``pageToken`` →
                                          ``files[{url, fileName}]``, ``log``,
                                          ``nextPageToken``
``DeleteKernel``                          ``userName``, ``kernelSlug`` → ``errorMessage``
``GetAcceleratorQuotaStatistics``         ``{}`` → ``gpuQuota{timeUsed, timeReserved,
                                          totalTimeAllowed}`` (durations "151.5s"),
                                          ``quotaRefreshTime``
``security.OAuthService/IntrospectToken`` ``token`` → ``active``, ``username``
========================================  ================================================

Confirmed from kagglesdk 0.1.38's generated types (``kernels/types/kernels_api_service.py``,
``kernels/services/kernels_api_service.py``, ``security/services/oauth_service.py``) and the
kaggle-cli's ``kaggle_api_extended.py`` (kernels_push / _status / _output / _delete); the URL
``https://api.kaggle.com/v1/kernels.KernelsApiService/GetKernelSessionStatus`` and the error
body ``{"code":500,"message":"Internal error"}`` appear in Kaggle/kaggle-cli#1053 (2026-06).
The log is a JSON array of ``{"stream_name", "time", "data"}`` (Kaggle/kaggle-cli#999).
The session-count message "Maximum batch GPU session count of N reached" comes in ``error``
(Kaggle/kaggle-cli#185, adapter-hub/playground#4).

Unverified (could not be checked without an account): the exact serialisation of ``status``
(``RUNNING`` vs ``running`` vs ``KERNEL_WORKER_STATUS_RUNNING``, so it is normalised); what a
missing kernel answers (404 assumed, any 4xx other than 401/403 on GetKernel reads as "absent");
that ``DeleteKernel`` stops a running session (the brief says deleting stops billing); the shape
of throttling pages (HTML on 429/502/503 is handled whatever it says); whether ``enableGpu``
is still read next to ``machineShape`` (both are sent).

Signed output URLs are fetched by a second client that never sends the token.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bot.kernels.formatting import clean_text
from bot.kernels.kaggle.settings import KaggleSettings

log = logging.getLogger(__name__)

KERNELS = "kernels.KernelsApiService"
OAUTH = "security.OAuthService"
USER_AGENT = "nbhelp-kaggle/0.1"
Sleep = Callable[[float], Awaitable[None]]

# KernelWorkerStatus names, normalised (lower case, letters only).
QUEUED, RUNNING, COMPLETE, ERROR = "queued", "running", "complete", "error"
CANCEL_REQUESTED, CANCEL_ACKNOWLEDGED, NEW_SCRIPT = (
    "cancelrequested",
    "cancelacknowledged",
    "newscript",
)
ACTIVE = frozenset({QUEUED, RUNNING})
TERMINAL = frozenset({COMPLETE, ERROR, CANCEL_REQUESTED, CANCEL_ACKNOWLEDGED})
_KNOWN = ACTIVE | TERMINAL | {NEW_SCRIPT}
CAPACITY_MESSAGE = re.compile(r"maximum\b.{0,40}\bsession count", re.IGNORECASE | re.DOTALL)


class ApiErrorKind(StrEnum):
    THROTTLED = "throttled"  # 429, 502, 503, 504, or an HTML page where JSON was expected
    SERVER = "server"  # other 5xx
    NETWORK = "network"  # no answer: connect/read error, timeout
    AUTH = "auth"  # 401/403: the token was refused
    NOT_FOUND = "not_found"
    REJECTED = "rejected"  # any other 4xx
    TOO_LARGE = "too_large"  # an answer over the byte cap


TRANSIENT = frozenset({ApiErrorKind.THROTTLED, ApiErrorKind.SERVER, ApiErrorKind.NETWORK})


class KaggleApiError(Exception):
    """A failed call. ``str()`` is safe to log: it never holds the token."""

    def __init__(
        self,
        kind: ApiErrorKind,
        message: str,
        *,
        method: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.method = method
        self.status = status
        self.retry_after = retry_after
        self.message = message
        where = f"{method}: " if method else ""
        code = f"HTTP {status} " if status is not None else ""
        super().__init__(f"{where}{code}{kind.value}: {message}")

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT


@dataclass(frozen=True, slots=True)
class SaveResult:
    ref: str = ""
    url: str = ""
    version: int | None = None
    error: str = ""

    @property
    def capacity(self) -> bool:
        """Kaggle's "Maximum batch GPU session count of N reached"."""
        return bool(self.error) and bool(CAPACITY_MESSAGE.search(self.error))


@dataclass(frozen=True, slots=True)
class SessionStatus:
    state: str  # normalised: queued, running, complete, error, cancel…, or "unknown"
    raw: str = ""
    failure: str = ""


@dataclass(frozen=True, slots=True)
class OutputFile:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class OutputListing:
    files: tuple[OutputFile, ...] = ()
    log: str = ""
    more_pages: bool = False


@dataclass(frozen=True, slots=True)
class Quota:
    used_s: float
    reserved_s: float
    allowed_s: float
    refresh_at: float | None = None

    @property
    def left_s(self) -> float:
        return max(0.0, self.allowed_s - self.used_s - self.reserved_s)


@dataclass
class ClientStats:
    """What the client did, for tests and the benchmark."""

    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    bytes_in: int = 0
    downloads: int = 0
    download_bytes: int = 0
    request_s: float = 0.0  # wall time spent in requests (answers included)


def normalise_status(raw: object) -> str:
    text = re.sub(r"[^a-z]", "", str(raw or "").lower())
    text = text.removeprefix("kernelworkerstatus")
    return text if text in _KNOWN else "unknown"


def parse_duration(value: object) -> float | None:
    """A protobuf JSON duration ("151.500s") or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)s?\s*", value)
        if m:
            return float(m.group(1))
    return None


def parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After``: seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def short(text: object, limit: int = 300) -> str:
    """Kaggle's text made safe to show: cleaned, one line, shortened."""
    cleaned = " ".join(clean_text(str(text)).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class KaggleClient:
    """One httpx client for the API (token attached) and one for signed URLs (no token)."""

    def __init__(
        self,
        settings: KaggleSettings,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        download_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._base = settings.base_url.rstrip("/")
        self._sleep = sleep
        timeout = httpx.Timeout(settings.request_timeout_s)
        self._api = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            follow_redirects=False,  # a redirect must never carry the token elsewhere
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )
        self._files = httpx.AsyncClient(
            transport=download_transport or transport,
            timeout=timeout,
            follow_redirects=True,
            max_redirects=3,
            headers={"User-Agent": USER_AGENT},
        )
        self.stats = ClientStats()

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._files.aclose()

    # -- one call ----------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        body: dict[str, Any],
        *,
        service: str = KERNELS,
        retry: bool = True,
        max_bytes: int | None = None,
    ) -> dict[str, Any]:
        """POST one method; retry throttling, 5xx and network faults unless ``retry`` is off."""
        if not retry:
            return await self._once(method, body, service, max_bytes)
        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, KaggleApiError) and e.transient),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        result: dict[str, Any] = await retrying(self._once, method, body, service, max_bytes)
        return result

    def _wait(self, state: RetryCallState) -> float:
        s = self.settings
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, KaggleApiError) and exc.retry_after is not None:
            return min(s.retry_max_s, exc.retry_after)
        jitter = wait_exponential_jitter(
            initial=s.retry_initial_s, max=s.retry_max_s, jitter=s.retry_initial_s
        )
        return float(jitter(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("Kaggle API: %s; retrying in %.1f s", exc, wait)

    async def _once(
        self, method: str, body: dict[str, Any], service: str, max_bytes: int | None
    ) -> dict[str, Any]:
        cap = max_bytes or self.settings.max_response_bytes
        url = f"{self._base}/v1/{service}/{method}"
        self.stats.requests[method] += 1
        started = time.perf_counter()
        try:
            async with self._api.stream("POST", url, json=body) as resp:
                raw, over = await _read_capped(resp, cap)
                status = resp.status_code
                ctype = resp.headers.get("content-type", "")
                retry_after = retry_after_s(resp.headers.get("retry-after"))
        except httpx.TimeoutException as exc:
            raise KaggleApiError(ApiErrorKind.NETWORK, "timed out", method=method) from exc
        except httpx.HTTPError as exc:
            raise KaggleApiError(ApiErrorKind.NETWORK, type(exc).__name__, method=method) from exc
        finally:
            self.stats.request_s += time.perf_counter() - started
        self.stats.bytes_in += len(raw)
        if over:
            raise KaggleApiError(
                ApiErrorKind.TOO_LARGE, f"answer over {cap} bytes", method=method, status=status
            )
        data = _json_object(raw) if "html" not in ctype.lower() else None
        if data is not None and isinstance(data.get("code"), int) and data["code"] >= 400:
            status = data["code"]  # an error body, whatever the HTTP status said
        elif 200 <= status < 300:
            if data is None:
                raise KaggleApiError(
                    ApiErrorKind.THROTTLED,
                    "an HTML page where JSON was expected",
                    method=method,
                    status=status,
                    retry_after=retry_after,
                )
            return data
        message = short(data.get("message", "")) if data is not None else ""
        if not message:
            message = "an HTML page" if data is None and raw else "no details"
        raise KaggleApiError(
            _kind(status, json_answer=data is not None),
            message,
            method=method,
            status=status,
            retry_after=retry_after,
        )

    # -- the endpoints -----------------------------------------------------------------------
    async def introspect(self, token: str) -> str:
        """The username the token belongs to."""
        data = await self.call("IntrospectToken", {"token": token}, service=OAUTH)
        name = data.get("username")
        if not data.get("active") or not isinstance(name, str) or not name:
            raise KaggleApiError(ApiErrorKind.AUTH, "the token is not active", method="Introspect")
        return name

    async def save_kernel(
        self,
        owner: str,
        slug: str,
        *,
        title: str,
        text: str,
        accelerator: str,
        session_timeout_s: int,
    ) -> SaveResult:
        """Push (create and run) a private script kernel. Never retried here: a push whose
        answer was lost may have started a session, so the caller reconciles first."""
        body = {
            "slug": f"{owner}/{slug}",
            "newTitle": title,
            "text": text,
            "language": "python",
            "kernelType": "script",
            "isPrivate": True,
            "enableGpu": True,
            "enableInternet": False,
            "machineShape": accelerator,
            "sessionTimeoutSeconds": session_timeout_s,
        }
        data = await self.call("SaveKernel", body, retry=False)
        version = data.get("versionNumber")
        return SaveResult(
            ref=str(data.get("ref") or ""),
            url=str(data.get("url") or ""),
            version=version if isinstance(version, int) else None,
            error=short(data.get("error") or ""),
        )

    async def kernel_exists(self, owner: str, slug: str) -> bool:
        try:
            await self.call("GetKernel", {"userName": owner, "kernelSlug": slug})
        except KaggleApiError as exc:
            if exc.kind in (ApiErrorKind.NOT_FOUND, ApiErrorKind.REJECTED):
                return False
            raise
        return True

    async def session_status(self, owner: str, slug: str) -> SessionStatus:
        data = await self.call("GetKernelSessionStatus", {"userName": owner, "kernelSlug": slug})
        raw = str(data.get("status") or "")
        return SessionStatus(
            normalise_status(raw), short(raw, 60), short(data.get("failureMessage") or "")
        )

    async def list_output(self, owner: str, slug: str) -> OutputListing:
        files: list[OutputFile] = []
        logs: list[str] = []
        token: str | None = None
        for _ in range(self.settings.max_output_pages):
            body: dict[str, Any] = {"userName": owner, "kernelSlug": slug}
            if token:
                body["pageToken"] = token
            data = await self.call("ListKernelSessionOutput", body)
            for item in data.get("files") or ():
                if isinstance(item, dict) and isinstance(item.get("url"), str):
                    files.append(OutputFile(str(item.get("fileName") or ""), item["url"]))
            if isinstance(data.get("log"), str) and data["log"]:
                logs.append(data["log"])
            token = data.get("nextPageToken") or None
            if not isinstance(token, str) or not token:
                return OutputListing(tuple(files), "".join(logs))
        return OutputListing(tuple(files), "".join(logs), more_pages=True)

    async def delete_kernel(self, owner: str, slug: str) -> bool:
        """Delete the kernel (stopping its session). False when it did not exist."""
        try:
            data = await self.call("DeleteKernel", {"userName": owner, "kernelSlug": slug})
        except KaggleApiError as exc:
            if exc.kind is ApiErrorKind.NOT_FOUND:
                return False
            raise
        if data.get("errorMessage"):
            raise KaggleApiError(
                ApiErrorKind.REJECTED, short(data["errorMessage"]), method="DeleteKernel"
            )
        return True

    async def quota(self) -> Quota | None:
        """The account's GPU quota, or None when the answer does not say."""
        data = await self.call("GetAcceleratorQuotaStatistics", {})
        gpu = data.get("gpuQuota")
        if not isinstance(gpu, dict):
            return None
        used = parse_duration(gpu.get("timeUsed", "0s"))
        reserved = parse_duration(gpu.get("timeReserved", "0s"))
        allowed = parse_duration(gpu.get("totalTimeAllowed"))
        if used is None or allowed is None:
            return None
        return Quota(used, reserved or 0.0, allowed, parse_time(data.get("quotaRefreshTime")))

    async def download(self, url: str, max_bytes: int) -> bytes | None:
        """A signed output URL, without the token; None when it is larger than ``max_bytes``."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise KaggleApiError(ApiErrorKind.REJECTED, "not an http(s) URL", method="download")
        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(min(3, self.settings.retries + 1)),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, KaggleApiError) and e.transient),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        result: bytes | None = await retrying(self._download_once, url, max_bytes)
        return result

    async def _download_once(self, url: str, max_bytes: int) -> bytes | None:
        self.stats.downloads += 1
        started = time.perf_counter()
        try:
            async with self._files.stream("GET", url) as resp:
                length = resp.headers.get("content-length", "")
                if resp.status_code >= 400:
                    raise KaggleApiError(
                        _kind(resp.status_code, json_answer=False),
                        "download failed",
                        method="download",
                        status=resp.status_code,
                        retry_after=retry_after_s(resp.headers.get("retry-after")),
                    )
                if length.isdigit() and int(length) > max_bytes:
                    return None
                raw, over = await _read_capped(resp, max_bytes)
        except httpx.TimeoutException as exc:
            raise KaggleApiError(ApiErrorKind.NETWORK, "timed out", method="download") from exc
        except httpx.HTTPError as exc:
            raise KaggleApiError(
                ApiErrorKind.NETWORK, type(exc).__name__, method="download"
            ) from exc
        finally:
            self.stats.request_s += time.perf_counter() - started
        self.stats.download_bytes += len(raw)
        return None if over else raw


def _kind(status: int, *, json_answer: bool) -> ApiErrorKind:
    if status == 429 or status in (502, 503, 504) or (status >= 500 and not json_answer):
        return ApiErrorKind.THROTTLED
    if status >= 500:
        return ApiErrorKind.SERVER
    if status in (401, 403):
        return ApiErrorKind.AUTH
    if status == 404:
        return ApiErrorKind.NOT_FOUND
    return ApiErrorKind.REJECTED


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def _read_capped(resp: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body; True when there was more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False
