"""An aiohttp fake of a Jupyter Kernel Gateway (REST + WebSocket JSON channels) on 127.0.0.1.

It speaks what Kernel Gateway 3.0.1 speaks (see ``bot/kernels/gateway/client.py``) and scripts
the ways a real gateway fails::

    async with FakeGateway(token="t") as fake:
        fake.url                               # http://127.0.0.1:PORT
        fake.max_kernels = 1                   # 403 {"message": "Resource Limit"}
        fake.post_delay_s = 2                  # a slow POST /api/kernels
        fake.cull(kernel_id)                   # deleted silently, WebSocket left open (as KG does)
        fake.refuse_reconnect = True           # a dropped WebSocket cannot be reopened
        await fake.stop(); await fake.start()  # the gateway goes down and comes back

Kernels run Python with ``exec`` in a per-kernel namespace (trusted test code only), in a
thread, so ``time.sleep`` in a cell does not block the fake. Lines starting with ``#fake:``
script a kernel's misbehaviour: ``drop`` (the WebSocket is cut after the output so far; the
rest is buffered for a reconnect with the same ``session_id``, like jupyter_server),
``die`` / ``restart`` (jupyter_server's ``execution_state`` dead / restarting), ``hang`` (runs
until interrupted), ``flood N`` (N messages of 1 kB), ``png N`` (an N-byte image),
``big N`` (one stream message of N bytes), ``garbage`` (frames that are not messages).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import io
import json
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass(eq=False)
class FakeKernel:
    id: str
    name: str
    env: dict[str, Any]
    namespace: dict[str, Any] = field(default_factory=dict)
    execution_count: int = 0
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    live: dict[str, web.WebSocketResponse] = field(default_factory=dict)  # session -> socket
    buffers: dict[str, list[str]] = field(default_factory=dict)  # session -> frames held back
    dropped: set[str] = field(default_factory=set)  # sessions whose socket we cut
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    dead: bool = False


class FakeGateway:
    def __init__(self, token: str | None = "test-token", kernelspec: str = "nbhelp-python"):
        self.token = token
        self.kernelspec = kernelspec
        self.kernels: dict[str, FakeKernel] = {}
        self.max_kernels: int | None = None
        self.per_user_limit: int | None = None
        self.post_delay_s = 0.0
        self.refuse_reconnect = False
        self.kernelspecs_body: bytes | None = None  # replaces the kernelspecs answer
        self.posts: list[dict[str, Any]] = []
        self.post_attempts = 0
        self.deleted: list[str] = []
        self.interrupts: list[str] = []
        self.auth_headers: list[str] = []
        self.ws_opens: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._changed = asyncio.Condition()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeGateway:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/kernelspecs", self._kernelspecs)
        app.router.add_post("/api/kernels", self._post_kernel)
        app.router.add_get("/api/kernels/{kid}", self._get_kernel)
        app.router.add_delete("/api/kernels/{kid}", self._delete_kernel)
        app.router.add_post("/api/kernels/{kid}/interrupt", self._interrupt)
        app.router.add_post("/api/kernels/{kid}/restart", self._restart)
        app.router.add_get("/api/kernels/{kid}/channels", self._channels)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        """The gateway goes down: connections close, its kernels are gone."""
        for kernel in self.kernels.values():
            for ws in list(kernel.sockets):
                await ws.close()
        self.kernels.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, condition: Any, timeout_s: float = 30.0) -> None:
        """Until ``condition()`` holds, re-checked after every request the fake answers."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(condition)

    async def _pulse(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def cull(self, kernel_id: str) -> None:
        """What culling does: the kernel is deleted; an open WebSocket stays open, silent."""
        self.kernels.pop(kernel_id, None)

    # -- REST --------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        self.auth_headers.append(header)
        try:
            if self.token is not None and header != f"token {self.token}":
                return _error(401, "Unauthorized")
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            await self._pulse()

    async def _kernelspecs(self, request: web.Request) -> web.Response:
        if self.kernelspecs_body is not None:
            return web.Response(body=self.kernelspecs_body, content_type="application/json")
        spec = {"argv": ["python"], "display_name": "nbhelp", "interrupt_mode": "message"}
        return web.json_response(
            {
                "default": self.kernelspec,
                "kernelspecs": {
                    self.kernelspec: {"name": self.kernelspec, "spec": spec, "resources": {}}
                },
            }
        )

    async def _post_kernel(self, request: web.Request) -> web.Response:
        self.post_attempts += 1
        body = await request.json()
        if self.max_kernels is not None and len(self.kernels) >= self.max_kernels:
            return _error(403, "Resource Limit", reason="Forbidden")
        env = body.get("env") or {}
        user = env.get("KERNEL_USERNAME")
        if self.per_user_limit is not None:
            count = sum(1 for k in self.kernels.values() if k.env.get("KERNEL_USERNAME") == user)
            if count >= self.per_user_limit:
                return _error(
                    403,
                    f"A max kernels per user limit has been set to {self.per_user_limit} and "
                    f"user '{user}' currently has {count} active and pending kernels.",
                )
        if self.post_delay_s:
            await asyncio.sleep(self.post_delay_s)  # scripted slowness, not synchronisation
        self.posts.append(body)
        kid = str(uuid.uuid4())
        self.kernels[kid] = FakeKernel(kid, body.get("name", ""), env)
        return web.json_response(
            {"id": kid, "name": body.get("name"), "execution_state": "starting"}, status=201
        )

    def _kernel(self, request: web.Request) -> FakeKernel | None:
        return self.kernels.get(request.match_info["kid"])

    async def _get_kernel(self, request: web.Request) -> web.Response:
        kernel = self._kernel(request)
        if kernel is None:
            return _not_found(request)
        return web.json_response({"id": kernel.id, "execution_state": "idle"})

    async def _delete_kernel(self, request: web.Request) -> web.Response:
        kernel = self.kernels.pop(request.match_info["kid"], None)
        if kernel is None:
            return _not_found(request)
        self.deleted.append(kernel.id)
        kernel.interrupted.set()
        for ws in list(kernel.sockets):
            await ws.close()
        return web.Response(status=204)

    async def _interrupt(self, request: web.Request) -> web.Response:
        kernel = self._kernel(request)
        if kernel is None:
            return _not_found(request)
        self.interrupts.append(kernel.id)
        kernel.interrupted.set()
        return web.Response(status=204)

    async def _restart(self, request: web.Request) -> web.Response:
        kernel = self._kernel(request)
        if kernel is None:
            return _not_found(request)
        await self._broadcast(kernel, _status("restarting"))
        kernel.namespace.clear()
        kernel.execution_count = 0
        return web.json_response({"id": kernel.id, "execution_state": "idle"})

    # -- WebSocket ---------------------------------------------------------------------------

    async def _channels(self, request: web.Request) -> web.StreamResponse:
        kernel = self._kernel(request)
        session = request.query.get("session_id", "")
        if kernel is None:
            return _not_found(request)
        if self.refuse_reconnect and session in kernel.dropped:
            return _error(503, "Service Unavailable")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.ws_opens.append((kernel.id, session))
        kernel.sockets.add(ws)
        while kernel.buffers.get(session):  # replayed first, like jupyter_server
            for frame in kernel.buffers.pop(session):
                await ws.send_str(frame)
        kernel.live[session] = ws
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if self.kernels.get(kernel.id) is not kernel:
                    continue  # culled: the socket stays open and nothing answers
                msg_type = frame["header"]["msg_type"]
                if msg_type == "kernel_info_request":
                    await self._send(kernel, ws, session, frame, "shell", "kernel_info_reply", {})
                elif msg_type == "execute_request":
                    task = asyncio.create_task(self._execute(kernel, ws, session, frame))
                    task.add_done_callback(lambda t: t.exception() if not t.cancelled() else 0)
        finally:
            kernel.sockets.discard(ws)
            if kernel.live.get(session) is ws:
                del kernel.live[session]
        return ws

    async def _broadcast(self, kernel: FakeKernel, frame: dict[str, Any]) -> None:
        for ws in list(kernel.sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps(frame))

    async def _send(
        self,
        kernel: FakeKernel,
        ws: web.WebSocketResponse,
        session: str,
        parent: dict[str, Any],
        channel: str,
        msg_type: str,
        content: dict[str, Any],
    ) -> None:
        frame = json.dumps(_msg(parent, channel, msg_type, content))
        live = kernel.live.get(session)
        if live is None or live.closed:
            kernel.buffers.setdefault(session, []).append(frame)  # held for a reconnect
            return
        await live.send_str(frame)

    async def _execute(
        self, kernel: FakeKernel, ws: web.WebSocketResponse, session: str, parent: dict[str, Any]
    ) -> None:
        content = parent["content"]
        code: str = content["code"]
        kernel.interrupted.clear()

        async def send(channel: str, msg_type: str, body: dict[str, Any]) -> None:
            await self._send(kernel, ws, session, parent, channel, msg_type, body)

        await send("iopub", "status", {"execution_state": "busy"})
        if content.get("store_history", True):
            kernel.execution_count += 1
        status = "ok"
        for line in code.splitlines():
            if not line.startswith("#fake:"):
                continue
            word, _, arg = line[len("#fake:") :].partition(" ")
            if word == "drop":
                kernel.dropped.add(session)
                kernel.live.pop(session, None)
                await ws.close()
            elif word == "die":
                await self._broadcast(kernel, _status("dead"))
                kernel.dead = True
                return
            elif word == "restart":
                await self._broadcast(kernel, _status("restarting"))
                kernel.namespace.clear()
                return
            elif word == "hang":
                await kernel.interrupted.wait()
                await send("iopub", "error", _error_content("KeyboardInterrupt", ""))
                status = "error"
            elif word == "flood":
                for _ in range(int(arg)):
                    await send("iopub", "stream", {"name": "stdout", "text": "x" * 1023 + "\n"})
            elif word == "big":
                await send("iopub", "stream", {"name": "stdout", "text": "y" * int(arg)})
            elif word == "png":
                png = base64.b64encode(b"\x89PNG" + b"\0" * int(arg)).decode()
                data = {"image/png": png, "text/plain": "<Figure>"}
                await send("iopub", "display_data", {"data": data, "metadata": {}})
            elif word == "garbage":
                await ws.send_str("this is not json")
                await ws.send_bytes(b"\x00\x01binary")
                await ws.send_str(json.dumps([1, 2, 3]))
                await ws.send_str(json.dumps({"channel": "iopub", "header": "nonsense"}))
        if status == "ok":
            stdout, result, error = await asyncio.to_thread(_run, code, kernel.namespace)
            if stdout:
                await send("iopub", "stream", {"name": "stdout", "text": stdout})
            if result is not None:
                data = {"text/plain": result}
                await send(
                    "iopub",
                    "execute_result",
                    {"data": data, "metadata": {}, "execution_count": kernel.execution_count},
                )
            if error is not None:
                await send("iopub", "error", error)
                status = "error"
        reply = {"status": status, "execution_count": kernel.execution_count}
        await send("shell", "execute_reply", reply)
        await send("iopub", "status", {"execution_state": "idle"})


def _run(code: str, namespace: dict[str, Any]) -> tuple[str, str | None, dict[str, Any] | None]:
    out = io.StringIO()
    result = None
    try:
        tree = ast.parse(code)
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        if last is not None:
            tree.body.pop()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, "<cell>", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
                result = None if value is None else repr(value)
    except Exception as exc:
        return out.getvalue(), None, _error_content(type(exc).__name__, str(exc))
    return out.getvalue(), result, None


def _error_content(ename: str, evalue: str) -> dict[str, Any]:
    tb = ["Traceback (most recent call last):", *traceback.format_stack(limit=1)]
    return {"ename": ename, "evalue": evalue, "traceback": [*tb, f"{ename}: {evalue}"]}


def _msg(
    parent: dict[str, Any], channel: str, msg_type: str, content: dict[str, Any]
) -> dict[str, Any]:
    msg_id = uuid.uuid4().hex
    return {
        "header": {"msg_id": msg_id, "msg_type": msg_type, "session": "fake", "version": "5.3"},
        "msg_id": msg_id,
        "msg_type": msg_type,
        "parent_header": parent["header"],
        "metadata": {},
        "content": content,
        "buffers": [],
        "channel": channel,
    }


def _status(state: str) -> dict[str, Any]:
    msg = _msg({"header": {}}, "iopub", "status", {"execution_state": state})
    msg["parent_header"] = {}
    return msg


def _error(status: int, message: str, reason: str | None = None) -> web.Response:
    return web.json_response({"reason": reason or message, "message": message}, status=status)


def _not_found(request: web.Request) -> web.Response:
    return _error(404, f"Kernel does not exist: {request.match_info['kid']}", reason="Not Found")
