"""GatewayBackend: kernels on a Jupyter Kernel Gateway or Enterprise Gateway.

The same five operations as the local backend, over REST + WebSocket, so KernelService (sessions,
warm pool, fair queues, limits, output caps) runs on it unchanged:

- ``start(owner)``: ``POST /api/kernels`` with only ``KERNEL_USERNAME`` in ``env`` (an HMAC of the
  chat user, or an anonymous ``nbhelp-spare-…`` for a warm spare), open the WebSocket, wait for
  ``kernel_info_reply``, run one silent warm-up cell. A "Resource Limit" answer is retried with
  jittered backoff for ``full_retry_s``, then the user is told the server is full. A POST that
  outlives ``start_timeout_s`` is left to finish in the background and its kernel deleted.
- ``execute``: a kernel idle for longer than ``liveness_check_after_s`` is looked up first (a
  gateway culls idle kernels silently, even with a WebSocket open); a 404 → ``GONE`` and the
  service runs the code on a fresh session, saying the old one ended on the server. A dropped
  WebSocket mid-run is reopened once with the same ``session_id`` (jupyter_server replays what it
  buffered); if that fails the run ends ``LOST`` with what arrived. ``execution_state``
  ``dead``/``restarting`` from the server ends the run as a crash and the session with it.
- ``interrupt``: ``POST …/interrupt`` (the kernelspec should say ``interrupt_mode: message``).
- ``shutdown``: ``DELETE /api/kernels/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from bot.kernels.backend import (
    BackendState,
    ExecOutcome,
    ExecReply,
    KernelBackend,
    KernelHandle,
    OutputSink,
)
from bot.kernels.errors import KernelStartError, SandboxUnavailable
from bot.kernels.gateway.channel import GatewayKernel, Run, execute_request, message
from bot.kernels.gateway.client import GatewayClient
from bot.kernels.gateway.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayFull,
    GatewayUnreachable,
    KernelNotFound,
)
from bot.kernels.gateway.settings import GatewaySettings
from bot.kernels.models import KernelLimits

log = logging.getLogger(__name__)

WARM_UP = "print(end='')"
SPARE_PREFIX = "nbhelp-spare-"
USER_PREFIX = "nbhelp-"
ORPHAN_GRACE_S = 60.0  # a POST we gave up on may run this much longer, then it is dropped


def kernel_username(key: bytes, owner: str) -> str:
    """A stable id for ``owner`` that does not reveal it: ``nbhelp-`` + 16 hex of an HMAC.

    Lowercase letters, digits and ``-`` only, 23 characters: fits a Kubernetes namespace or
    label (Enterprise Gateway may name a kernel's namespace ``<KERNEL_USERNAME>-<kernel id>``).
    """
    digest = hmac.new(key, owner.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return USER_PREFIX + digest[:16]


class GatewayBackend(KernelBackend):
    owner_bound = True

    def __init__(self, settings: GatewaySettings, limits: KernelLimits) -> None:
        self.settings = settings
        self.limits = limits
        self.name = settings.name
        self._key = settings.hmac_key()
        self._client: GatewayClient | None = None
        self._kernels: dict[str, GatewayKernel] = {}
        self._starting = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._last_error: str | None = None
        self.max_msg_bytes = max(limits.output_bytes, limits.max_image_bytes * 4 // 3) * 2 + (
            64 << 10
        )

    # -- interface ---------------------------------------------------------------------------

    @property
    def client(self) -> GatewayClient:
        if self._client is None:
            self._client = GatewayClient(self.settings)
        return self._client

    @property
    def sandboxed(self) -> bool:
        return self.settings.sandboxed

    @property
    def gpu(self) -> str | None:
        if not self.settings.gpu:
            return None
        return self.settings.gpu_description or "GPU (model not configured)"

    async def check(self) -> None:
        """Refuse for good on operator errors (auth, missing kernelspec); a gateway that is
        down now is only logged, so /run works again once it is back."""
        try:
            specs = await self.client.kernelspecs()
        except GatewayAuthError as exc:
            log.error("gateway %s refuses the bot: %s (check its token)", self.name, exc)
            raise SandboxUnavailable(exc.user_message, detail=str(exc)) from None
        except GatewayError as exc:
            self._last_error = exc.user_message
            log.warning("gateway %s not usable at start: %s", self.name, exc)
            return
        if self.settings.kernelspec not in specs:
            names = ", ".join(sorted(str(n) for n in specs)[:10]) or "none"
            detail = (
                f"gateway {self.name}: kernelspec {self.settings.kernelspec!r} not found "
                f"(it has: {names})"
            )
            log.error("%s", detail)
            raise SandboxUnavailable(
                f"/run on {self.name} is unavailable: its kernel server is not set up for "
                "this bot. The bot's operator needs to fix it.",
                detail=detail,
            )
        self._last_error = None

    async def start(self, owner: str | None = None) -> GatewayKernel:
        username = (
            kernel_username(self._key, owner)
            if owner is not None
            else SPARE_PREFIX + secrets.token_hex(5)
        )
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(GatewayFull),
                stop=stop_after_delay(self.settings.full_retry_s),
                wait=wait_random_exponential(multiplier=0.2, max=5.0),
                reraise=True,
            ):
                with attempt:
                    return await self._start(username)
        except GatewayAuthError as exc:
            log.error("gateway %s refuses the bot: %s (check its token)", self.name, exc)
            raise
        except GatewayError as exc:
            log.warning("gateway %s: could not start a kernel: %s", self.name, exc)
            raise
        raise AssertionError("unreachable")

    async def execute(self, kernel: KernelHandle, code: str, sink: OutputSink) -> ExecReply:
        assert isinstance(kernel, GatewayKernel)
        if not kernel.alive:
            return ExecReply(ExecOutcome.DIED)
        idle_for = time.monotonic() - kernel.last_traffic
        try:
            if kernel.ws is None or idle_for > self.settings.liveness_check_after_s:
                await self.client.kernel(kernel.id)  # a culled kernel answers 404
            await self._ensure_channels(kernel)
        except KernelNotFound:
            kernel.mark_gone("the kernel server ended it; its variables are gone")
            return ExecReply(ExecOutcome.GONE)
        except GatewayError as exc:
            log.warning("gateway %s: kernel %s unusable: %s", self.name, kernel.id, exc)
            kernel.mark_gone("the kernel server does not answer", ExecOutcome.LOST)
            return ExecReply(ExecOutcome.LOST)
        request = execute_request(code, kernel.session_id)
        run = Run(request["header"]["msg_id"], sink)
        kernel.current = run
        kernel.stray_bytes = 0
        try:
            # If the socket closed under us, reopen it once and send again (nothing ran yet).
            sent = await self._send(kernel, request) or (
                await self._reconnect(kernel) and await self._send(kernel, request)
            )
            if not sent:
                kernel.mark_gone("the connection to the kernel server was lost")
                return ExecReply(ExecOutcome.LOST)
            return await run.future
        finally:
            if kernel.current is run:
                kernel.current = None

    async def interrupt(self, kernel: KernelHandle) -> None:
        assert isinstance(kernel, GatewayKernel)
        if not kernel.alive:
            return
        try:
            await self.client.interrupt(kernel.id)
        except KernelNotFound:
            kernel.mark_gone("the kernel server ended it; its variables are gone", ExecOutcome.LOST)
        except GatewayError as exc:
            log.warning("gateway %s: interrupt of %s failed: %s", self.name, kernel.id, exc)

    async def shutdown(self, kernel: KernelHandle) -> None:
        assert isinstance(kernel, GatewayKernel)
        kernel.closing = True
        kernel.fail_current(ExecOutcome.DIED)
        self._kernels.pop(kernel.id, None)
        await self._close_channels(kernel)
        try:
            await self.client.delete(kernel.id)
        except GatewayError as exc:
            log.warning("gateway %s: could not delete kernel %s: %s", self.name, kernel.id, exc)

    async def restart(self, kernel: KernelHandle, owner: str | None = None) -> KernelHandle:
        """``POST …/restart``: the same kernel id with its state gone."""
        assert isinstance(kernel, GatewayKernel)
        if not kernel.alive:
            await self.shutdown(kernel)
            return await self.start(owner)
        kernel.expect_restart = True
        try:
            await self.client.restart(kernel.id, self.settings.start_timeout_s)
            async with asyncio.timeout(self.settings.start_timeout_s):
                await self._wait_ready(kernel)
        except (GatewayError, TimeoutError) as exc:
            log.warning("gateway %s: restart of %s failed: %s", self.name, kernel.id, exc)
            await self.shutdown(kernel)
            return await self.start(owner)
        finally:
            kernel.expect_restart = False
        return kernel

    async def state(self) -> BackendState:
        reachable = True
        detail = None
        try:
            await self.client.kernelspecs()
        except GatewayError as exc:
            reachable = False
            detail = exc.user_message
        return BackendState(
            name=self.name,
            reachable=reachable,
            kernels_in_use=len(self._kernels) + self._starting,
            max_kernels=self.settings.max_kernels,
            gpu=self.gpu,
            detail=detail,
            limits=(f"kernelspec {self.settings.kernelspec}",),
        )

    async def aclose(self) -> None:
        for kernel in list(self._kernels.values()):
            await self.shutdown(kernel)
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=5.0)
            for task in pending:
                task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- starting ----------------------------------------------------------------------------

    async def _start(self, username: str) -> GatewayKernel:
        if len(self._kernels) + self._starting >= self.settings.max_kernels:
            raise GatewayFull(
                self.name,
                detail=f"the bot's own cap of {self.settings.max_kernels} kernels is reached",
            )
        self._starting += 1
        try:
            kernel_id = await self._post_kernel(username)
            kernel = GatewayKernel(kernel_id, username, stray_limit=4 * self.max_msg_bytes)
            self._kernels[kernel_id] = kernel
        finally:
            self._starting -= 1
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                await self._open_when_up(kernel)
                await self._wait_ready(kernel)
                warm = execute_request(WARM_UP, kernel.session_id, count=False)
                run = Run(warm["header"]["msg_id"], lambda output, size: None)
                kernel.current = run
                try:
                    if not await self._send(kernel, warm):
                        raise GatewayUnreachable(self.name, detail="channels closed at start")
                    reply = await run.future
                finally:
                    kernel.current = None
                if reply.outcome is not ExecOutcome.FINISHED:
                    raise KernelStartError(detail=f"warm-up ended {reply.outcome}: {kernel.gone}")
        except BaseException as exc:
            await asyncio.shield(self.shutdown(kernel))
            if isinstance(exc, TimeoutError):
                raise GatewayUnreachable(
                    self.name, detail=f"kernel {kernel_id} not ready in time"
                ) from None
            if isinstance(exc, KernelNotFound):
                raise KernelStartError(detail=f"kernel {kernel_id} vanished at start") from None
            raise
        log.debug("gateway %s: kernel %s started for %s", self.name, kernel_id, username)
        return kernel

    async def _open_when_up(self, kernel: GatewayKernel) -> None:
        """The first WebSocket: jupyter_server answers its handshake only once the kernel is
        up, so it gets the start budget; meanwhile the kernel is looked up each second, so a
        kernel that dies while starting (the gateway drops it) fails the start at once."""
        opening = asyncio.create_task(self._ensure_channels(kernel, self.settings.start_timeout_s))
        try:
            while True:
                done, _ = await asyncio.wait({opening}, timeout=1.0)
                if done:
                    await opening
                    return
                try:
                    await self.client.kernel(kernel.id)
                except KernelNotFound:
                    raise KernelStartError(
                        detail=f"gateway {self.name}: kernel {kernel.id} died while starting "
                        "(see the gateway's log)"
                    ) from None
        finally:
            opening.cancel()

    async def _post_kernel(self, username: str) -> str:
        """POST /api/kernels, giving up after start_timeout_s; a POST we gave up on keeps
        running in the background (bounded) and any kernel it yields is deleted."""
        env = {"KERNEL_USERNAME": username}
        budget = self.settings.start_timeout_s
        task = asyncio.create_task(
            self.client.start_kernel(self.settings.kernelspec, env, budget + ORPHAN_GRACE_S)
        )
        try:
            return await asyncio.wait_for(asyncio.shield(task), budget)
        except TimeoutError:
            self._adopt_orphan(task)
            raise GatewayUnreachable(
                self.name, detail=f"POST /api/kernels took over {budget:g} s"
            ) from None
        except asyncio.CancelledError:
            self._adopt_orphan(task)
            raise

    def _adopt_orphan(self, task: asyncio.Task[str]) -> None:
        async def cleanup() -> None:
            with contextlib.suppress(Exception):
                kernel_id = await task
                log.info("gateway %s: deleting kernel %s started too late", self.name, kernel_id)
                await self.client.delete(kernel_id)

        bg = asyncio.create_task(cleanup())
        self._background.add(bg)
        bg.add_done_callback(self._background.discard)

    async def _wait_ready(self, kernel: GatewayKernel) -> None:
        """Until the kernel answers kernel_info (asked again each second: a request sent before
        the kernel listens may be lost). The caller bounds the wait."""
        while True:
            request = message("kernel_info_request", {}, kernel.session_id, "shell")
            msg_id = request["header"]["msg_id"]
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            kernel.pending[msg_id] = fut
            try:
                if not await self._send(kernel, request) and not await self._reconnect(kernel):
                    raise GatewayUnreachable(self.name, detail="channels closed at start")
                done, _ = await asyncio.wait({fut}, timeout=1.0)
                if fut in done:
                    if fut.cancelled():
                        raise KernelStartError(detail=f"kernel {kernel.id}: {kernel.gone}")
                    return
            finally:
                kernel.pending.pop(msg_id, None)
                fut.cancel()

    # -- channels ----------------------------------------------------------------------------

    async def _ensure_channels(self, kernel: GatewayKernel, timeout_s: float | None = None) -> None:
        """Open the kernel's WebSocket unless it is open. jupyter_server answers the handshake
        only once the kernel is up, so the first one at start gets the start budget."""
        if kernel.ws is not None and not kernel.ws.closed:
            return
        ws = await self.client.channels(
            kernel.id,
            kernel.session_id,
            max_msg_size=self.max_msg_bytes,
            timeout_s=timeout_s or self.settings.reconnect_timeout_s,
        )
        kernel.ws = ws
        kernel.reader = asyncio.create_task(self._read(kernel, ws))

    async def _send(self, kernel: GatewayKernel, msg: dict[str, Any]) -> bool:
        ws = kernel.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_json(msg)
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return False
        return True

    async def _reconnect(self, kernel: GatewayKernel) -> bool:
        """Reopen the channels once (same session_id: the server replays its buffer)."""
        async with kernel.lock:
            if kernel.closing or kernel.gone is not None:
                return False
            if kernel.ws is not None and not kernel.ws.closed:
                return True  # another task reconnected meanwhile
            kernel.ws = None
            try:
                await self._ensure_channels(kernel)
            except KernelNotFound:
                kernel.mark_gone("the kernel server ended your session", ExecOutcome.LOST)
                return False
            except GatewayError as exc:
                log.warning("gateway %s: reconnect to %s failed: %s", self.name, kernel.id, exc)
                return False
        log.info("gateway %s: reconnected to kernel %s", self.name, kernel.id)
        return True

    async def _read(self, kernel: GatewayKernel, ws: aiohttp.ClientWebSocketResponse) -> None:
        too_big = False
        quickack = tcp_quickack(ws)
        try:
            async for msg in ws:
                quickack()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    kernel.dispatch(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    kernel.dispatch("")  # counted as stray; we never ask for binary frames
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    too_big = _is_too_big(ws.exception())
                    break
        except asyncio.CancelledError:
            return
        except Exception:  # a hostile gateway must never kill the bot
            log.warning("gateway %s: reader of %s failed", self.name, kernel.id, exc_info=True)
        if kernel.ws is not ws or kernel.closing:
            return
        kernel.ws = None
        if too_big or ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
            kernel.mark_gone("a message over the size limit", ExecOutcome.BROKEN)
            return
        if kernel.current is None:
            return  # idle: the next run reopens the channels (or finds the kernel gone)
        if await self._reconnect(kernel):
            return
        kernel.mark_gone("the connection to the kernel server was lost", ExecOutcome.LOST)

    async def _close_channels(self, kernel: GatewayKernel) -> None:
        ws, reader = kernel.ws, kernel.reader
        kernel.ws = None
        kernel.reader = None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await ws.close()


def tcp_quickack(ws: aiohttp.ClientWebSocketResponse) -> Callable[[], None]:
    """Acknowledge every segment at once (Linux ``TCP_QUICKACK``, re-armed after each read).

    jupyter_server's kernel WebSocket leaves Nagle's algorithm on, so of the small frames a run
    produces (busy, output, reply, idle) the second waits until the first is acknowledged,
    and a client's delayed ACK (about 40 ms on Linux) stalls it: a warm ``print(1)`` took
    either ~10 ms or ~45 ms. Acknowledging at once removes the stall from our side.
    """
    sock = None
    with contextlib.suppress(Exception):
        conn = ws._response.connection
        sock = conn.transport.get_extra_info("socket") if conn and conn.transport else None
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return lambda: None

    def arm() -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)

    arm()
    return arm


def _is_too_big(exc: BaseException | None) -> bool:
    code = getattr(exc, "code", None)
    return code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG or "too big" in str(exc).lower()
