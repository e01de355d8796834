"""The gateway's REST API with aiohttp: bounded bodies, JSON checked, errors mapped.

Kernel Gateway 3.0.1 and Enterprise Gateway 3.x serve the same endpoints (jupyter_server's):

- ``GET /api/kernelspecs`` → ``{"default": …, "kernelspecs": {name: {"spec": …}}}``
- ``POST /api/kernels`` ``{"name", "env"}`` → 201 ``{"id", "execution_state", …}``; 403 with
  ``"message": "Resource Limit"`` (Kernel Gateway's ``max_kernels``) or "A max kernels [per user]
  limit has been set …" (Enterprise Gateway)
- ``GET /api/kernels/{id}``, ``POST …/interrupt``, ``POST …/restart``, ``DELETE …`` (204);
  404 once the kernel is gone
- ``WS /api/kernels/{id}/channels?session_id=…`` (JSON frames with ``channel``)

Auth is the header ``Authorization: token <T>`` (Kernel Gateway 3.0.1 rejects ``Bearer``). The
token lives only in the session's default headers; nothing here logs headers or bodies we send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import aiohttp

from bot.kernels.gateway.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayFull,
    GatewayProtocolError,
    GatewayUnreachable,
    KernelNotFound,
)
from bot.kernels.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

_LIMIT = re.compile(r"resource limit|max(imum)? kernels", re.IGNORECASE)
_KERNEL_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def gateway_message(body: Any) -> str:
    """The gateway's own error text (``message`` or ``reason``), cut short for logs."""
    if isinstance(body, dict):
        for key in ("message", "reason"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
    return ""


class GatewayClient:
    """One aiohttp session to one gateway. Create inside the event loop; ``aclose`` at the end."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.name = settings.name
        headers = {"Accept": "application/json"}
        if settings.token is not None and settings.token.get_secret_value():
            headers["Authorization"] = f"token {settings.token.get_secret_value()}"
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.settings.connect_timeout_s
                ),
                # Our own cap on every header line; aiohttp's defaults are generous.
                max_line_size=16_384,
                max_field_size=16_384,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- endpoints ---------------------------------------------------------------------------

    async def kernelspecs(self) -> dict[str, Any]:
        body = await self._call("GET", "/api/kernelspecs", what="list kernelspecs")
        specs = body.get("kernelspecs") if isinstance(body, dict) else None
        if not isinstance(specs, dict):
            raise GatewayProtocolError(self.name, detail="kernelspecs: no 'kernelspecs' object")
        return specs

    async def start_kernel(self, kernelspec: str, env: dict[str, str], timeout_s: float) -> str:
        body = await self._call(
            "POST",
            "/api/kernels",
            json_body={"name": kernelspec, "env": env},
            what="start a kernel",
            timeout_s=timeout_s,
            expect=(200, 201),
        )
        kernel_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(kernel_id, str) or not _KERNEL_ID.match(kernel_id):
            raise GatewayProtocolError(self.name, detail="start a kernel: no valid 'id'")
        return kernel_id

    async def kernel(self, kernel_id: str) -> dict[str, Any]:
        """The kernel's model; raises KernelNotFound (404) when the gateway no longer has it."""
        body = await self._call("GET", f"/api/kernels/{kernel_id}", what="look up a kernel")
        return body if isinstance(body, dict) else {}

    async def interrupt(self, kernel_id: str) -> None:
        await self._call(
            "POST", f"/api/kernels/{kernel_id}/interrupt", what="interrupt", expect=(200, 204)
        )

    async def restart(self, kernel_id: str, timeout_s: float) -> None:
        await self._call(
            "POST",
            f"/api/kernels/{kernel_id}/restart",
            what="restart",
            timeout_s=timeout_s,
            expect=(200, 201),
        )

    async def delete(self, kernel_id: str) -> None:
        """Shut the kernel down; a kernel that is already gone counts as done."""
        try:
            await self._call("DELETE", f"/api/kernels/{kernel_id}", what="delete", expect=(204,))
        except KernelNotFound:
            return

    async def channels(
        self, kernel_id: str, session_id: str, *, max_msg_size: int, timeout_s: float
    ) -> aiohttp.ClientWebSocketResponse:
        """Open the kernel's WebSocket (JSON frames). The same ``session_id`` on a reconnect
        makes jupyter_server replay what it buffered while we were away."""
        url = f"{self.settings.base_url}/api/kernels/{kernel_id}/channels"
        url = "ws" + url[len("http") :]
        try:
            async with asyncio.timeout(timeout_s):
                return await self.session.ws_connect(
                    url,
                    params={"session_id": session_id},
                    max_msg_size=max_msg_size,
                    heartbeat=self.settings.heartbeat_s,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    autoping=True,
                    compress=0,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise self._status_error(exc.status, None, "open the kernel's channels") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GatewayUnreachable(
                self.name, detail=f"open the kernel's channels: {type(exc).__name__}"
            ) from None

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        url = self.settings.base_url + path
        limit = timeout_s if timeout_s is not None else self.settings.request_timeout_s
        try:
            async with self.session.request(
                method, url, json=json_body, allow_redirects=False, **_timeout(limit)
            ) as resp:
                raw = await resp.content.read(self.settings.max_body_bytes + 1)
                status = resp.status
        except GatewayError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise GatewayUnreachable(
                self.name, detail=f"{what}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        if len(raw) > self.settings.max_body_bytes:
            raise GatewayProtocolError(
                self.name, detail=f"{what}: answer over {self.settings.max_body_bytes} bytes"
            )
        body: Any = None
        if raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                if status in expect and status != 204:
                    raise GatewayProtocolError(
                        self.name, detail=f"{what}: HTTP {status} with a body that is not JSON"
                    ) from None
        if status in expect:
            return body
        raise self._status_error(status, body, what)

    def _status_error(self, status: int, body: Any, what: str) -> GatewayError:
        message = gateway_message(body)
        detail = f"{what}: HTTP {status} {message}".strip()
        if status == 404:
            return KernelNotFound(self.name, detail=detail)
        if status == 403 and _LIMIT.search(message):
            return GatewayFull(self.name, detail=detail)
        if status in (401, 403):
            return GatewayAuthError(self.name, detail=detail)
        if status in (429, 502, 503, 504) or status >= 500:
            return GatewayUnreachable(self.name, detail=detail)
        return GatewayProtocolError(self.name, detail=detail)


def _timeout(total_s: float) -> dict[str, Any]:
    return {"timeout": aiohttp.ClientTimeout(total=total_s)}
