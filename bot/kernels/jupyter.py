"""A small, hardened Jupyter messaging client for kernels we do not trust.

Everything a kernel sends is treated as hostile input: message sizes are capped in libzmq
(``MAXMSGSIZE``; an oversized message drops the connection instead of being buffered in the
bot), receive queues are short, signatures are checked, content is decoded defensively, and a
dropped connection is never re-established (a kernel could otherwise swap its socket file for a
symlink to some host socket). A dropped connection marks the kernel *broken*; the service then
replaces it.

A kernel can reach its own ZMQ streams and knows its HMAC key, so it can flood any channel with
well-signed or garbage frames. The readers yield to the event loop after every message, and
every byte received on every channel counts against a traffic budget: ``traffic_limit`` during
a run, ``stray_limit`` between runs (a background thread). Past it the connection is dropped as
a *flood* (:data:`FLOOD`) and the backend kills the kernel: a flooding kernel costs its own
session, never the other chats.

Shared by every backend that speaks the Jupyter protocol over ZMQ (the local sandbox today).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session
from zmq.utils.monitor import parse_monitor_message

from bot.kernels.formatting import clean_text, trim_traceback
from bot.kernels.models import ErrorOutput, ImageOutput, Output, ResultOutput, StreamOutput

log = logging.getLogger(__name__)

OutputSink = Callable[[Output, int], None]
"""Called with each output of the running cell and the size of the message that carried it."""

CHANNELS = ("shell", "iopub", "control")
DELIM = b"<IDS|MSG>"
FLOOD = "flood"  # prefix of broken_reason when the kernel sent more than its traffic budget


class ExecOutcome(StrEnum):
    FINISHED = "finished"  # execute_reply and the idle status arrived
    DIED = "died"  # the kernel process exited
    BROKEN = "broken"  # the connection dropped (oversized message, kernel closed sockets)
    LOST = "lost"  # a remote kernel's connection dropped mid-run and could not be resumed
    GONE = "gone"  # a remote kernel was no longer there (culled by its server); nothing ran


@dataclass(frozen=True, slots=True)
class ExecReply:
    outcome: ExecOutcome
    status: str = ""  # execute_reply status: "ok", "error", "aborted"
    execution_count: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    transport: str
    ip: str  # for ipc: the socket path prefix as the bot sees it
    key: str
    ports: dict[str, int]
    signature_scheme: str = "hmac-sha256"

    def url(self, channel: str) -> str:
        port = self.ports[channel]
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        return f"{self.transport}://{self.ip}:{port}"

    def as_kernel_json(self, ip: str) -> dict[str, Any]:
        """The connection file the kernel reads (``ip`` as the kernel sees it)."""
        return {
            "transport": self.transport,
            "ip": ip,
            "key": self.key,
            "signature_scheme": self.signature_scheme,
            "kernel_name": "python3",
            **{f"{name}_port": port for name, port in self.ports.items()},
        }


IPC_PORTS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}


class _Exec:
    __slots__ = ("future", "idle", "msg_id", "reply", "sink")

    def __init__(self, msg_id: str, sink: OutputSink) -> None:
        self.msg_id = msg_id
        self.sink = sink
        self.idle = False
        self.reply: ExecReply | None = None
        self.future: asyncio.Future[ExecReply] = asyncio.get_running_loop().create_future()

    def finish(self, reply: ExecReply) -> None:
        if not self.future.done():
            self.future.set_result(reply)

    def maybe_done(self) -> None:
        if self.idle and self.reply is not None:
            self.finish(self.reply)


class JupyterConnection:
    def __init__(
        self,
        info: ConnectionInfo,
        *,
        max_msg_bytes: int,
        rcvhwm: int = 32,
        stray_limit: int | None = None,
        traffic_limit: int | None = None,
    ) -> None:
        self.info = info
        self.max_msg_bytes = max_msg_bytes
        self.session = Session(key=info.key.encode(), signature_scheme=info.signature_scheme)
        self.session.username = "nbhelp"
        digest = info.signature_scheme.split("-", 1)[-1]
        self._hmac = hmac.new(info.key.encode(), digestmod=getattr(hashlib, digest))
        ctx = zmq.asyncio.Context.instance()
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        for name, kind in (("shell", zmq.DEALER), ("iopub", zmq.SUB), ("control", zmq.DEALER)):
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, max_msg_bytes)
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
            sock.setsockopt(zmq.RECONNECT_IVL, -1)  # never reconnect: see the module docstring
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            self._sockets[name] = sock
        self._tasks: list[asyncio.Task[None]] = []
        self._current: _Exec | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.iopub_seen = asyncio.Event()
        self.broken = asyncio.Event()
        self.broken_reason = ""
        self.stray_bytes = 0  # traffic on any channel between runs
        # Past this much of it between two runs (a background thread flooding), give up on the
        # kernel rather than spend the bot's CPU discarding its output.
        self.stray_limit = stray_limit if stray_limit is not None else 4 * max_msg_bytes
        self.traffic = 0  # every byte received during the current run, on every channel
        self.traffic_limit = traffic_limit if traffic_limit is not None else 16 * max_msg_bytes
        self.received = 0  # every byte ever received (for the record and the tests)
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        for name, sock in self._sockets.items():
            monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
            sock.connect(self.info.url(name))
            self._tasks.append(asyncio.create_task(self._watch(name, monitor)))
            self._tasks.append(asyncio.create_task(self._read(name, sock)))

    async def wait_ready(self) -> None:
        """Until the kernel answers kernel_info and IOPub is subscribed (no lost first output).

        The caller bounds the wait (``asyncio.timeout``)."""
        broken = asyncio.ensure_future(self.broken.wait())
        try:
            while True:
                if self.broken.is_set():
                    raise ConnectionError(f"kernel connection dropped: {self.broken_reason}")
                fut = self._request("shell", "kernel_info_request", {})
                done, _ = await asyncio.wait(
                    {fut, broken}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                if fut in done:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.iopub_seen.wait(), 0.2)
                    if self.iopub_seen.is_set():
                        return
                else:
                    fut.cancel()
        finally:
            broken.cancel()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            task.cancel()
        for sock in self._sockets.values():
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            sock.close(linger=0)
        if self._current is not None:
            self._current.finish(ExecReply(ExecOutcome.BROKEN))
        for fut in self._replies.values():
            fut.cancel()

    # -- requests ----------------------------------------------------------------------------

    async def execute(self, code: str, sink: OutputSink, *, count: bool = True) -> ExecReply:
        """Run a cell; with ``count=False`` (a warm-up) it takes no execution number."""
        if self.broken.is_set() or self.closed:
            return ExecReply(ExecOutcome.BROKEN)
        content = {
            "code": code,
            "silent": False,
            "store_history": count,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self.session.msg("execute_request", content)
        current = _Exec(msg["header"]["msg_id"], sink)
        self.stray_bytes = 0
        self.traffic = 0
        self._current = current
        try:
            self.session.send(self._sockets["shell"], msg)
            return await current.future
        finally:
            if self._current is current:
                self._current = None

    def interrupt(self) -> None:
        """Message-mode interrupt: ipykernel raises KeyboardInterrupt in the running cell.

        (A signal would reach bwrap's PID 1 instead of the kernel and kill the sandbox.)
        """
        if not self.closed:
            self._request("control", "interrupt_request", {})

    def fail_current(self, outcome: ExecOutcome) -> None:
        if self._current is not None:
            self._current.finish(ExecReply(outcome))

    def _request(self, channel: str, msg_type: str, content: dict[str, Any]) -> asyncio.Future:
        msg = self.session.msg(msg_type, content)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        msg_id = msg["header"]["msg_id"]
        self._replies[msg_id] = fut
        fut.add_done_callback(lambda _: self._replies.pop(msg_id, None))
        self.session.send(self._sockets[channel], msg)
        return fut

    # -- receiving ---------------------------------------------------------------------------

    async def _watch(self, name: str, monitor: zmq.asyncio.Socket) -> None:
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                    self._mark_broken(f"{name} disconnected")
                    return
        except (asyncio.CancelledError, zmq.ZMQError):
            return
        finally:
            monitor.close(linger=0)

    def _mark_broken(self, reason: str) -> None:
        if not self.broken.is_set():
            self.broken_reason = reason
            self.broken.set()
            self.fail_current(ExecOutcome.BROKEN)

    async def _read(self, name: str, sock: zmq.asyncio.Socket) -> None:
        while True:
            try:
                parts = await sock.recv_multipart()
            except (asyncio.CancelledError, zmq.ZMQError):
                return
            if not self._count(sum(len(p) for p in parts)):
                return  # over budget: the connection is gone
            try:
                self._dispatch(name, parts)
            except Exception:  # a hostile kernel must never kill the reader
                log.debug("dropped a malformed %s message", name, exc_info=True)
            # A message that is already queued completes the await above without yielding;
            # yield here, or a kernel that keeps sending would hold the event loop.
            await asyncio.sleep(0)

    def _count(self, size: int) -> bool:
        """Charge ``size`` bytes to the budget; False (and the connection dropped) past it."""
        self.received += size
        if self._current is not None:
            self.traffic += size
            over, limit = self.traffic > self.traffic_limit, self.traffic_limit
            when = "while your code ran"
        else:
            self.stray_bytes += size
            over, limit, when = (
                self.stray_bytes > self.stray_limit,
                self.stray_limit,
                "between runs",
            )
        if over and not self.broken.is_set():
            self._mark_broken(
                f"{FLOOD}: its kernel sent more than {limit / 1e6:.0f} MB to the bot {when}"
            )
            asyncio.get_running_loop().call_soon(self.close)
        return not self.broken.is_set()

    def _parse(self, parts: list[bytes]) -> tuple[dict[str, Any], dict[str, Any], bytes] | None:
        try:
            i = parts.index(DELIM)
        except ValueError:
            return None
        frames = parts[i + 1 :]
        if len(frames) < 5:
            return None
        mac = self._hmac.copy()
        for frame in frames[1:5]:
            mac.update(frame)
        if not hmac.compare_digest(mac.hexdigest().encode(), frames[0]):
            return None
        header = json.loads(frames[1])
        parent = json.loads(frames[2])
        if not isinstance(header, dict) or not isinstance(parent, dict):
            return None
        return header, parent, frames[4]

    def _dispatch(self, name: str, parts: list[bytes]) -> None:
        size = sum(len(p) for p in parts)
        parsed = self._parse(parts)
        if name == "iopub":
            current = self._current
            if parsed is None or current is None or parsed[1].get("msg_id") != current.msg_id:
                self.iopub_seen.set()
                return
            self.iopub_seen.set()
            header, _, raw_content = parsed
            self._on_iopub(current, header.get("msg_type"), _loads(raw_content), size)
            return
        if parsed is None:
            return
        header, parent, raw_content = parsed
        msg_type = header.get("msg_type")
        parent_id = parent.get("msg_id")
        fut = self._replies.get(parent_id) if isinstance(parent_id, str) else None
        if fut is not None and not fut.done():
            content = _loads(raw_content)
            fut.set_result(content)
            return
        current = self._current
        if (
            name == "shell"
            and current is not None
            and parent_id == current.msg_id
            and msg_type == "execute_reply"
        ):
            content = _loads(raw_content)
            count = content.get("execution_count")
            current.reply = ExecReply(
                ExecOutcome.FINISHED,
                status=str(content.get("status", "")),
                execution_count=count if isinstance(count, int) else None,
            )
            current.maybe_done()

    def _on_iopub(self, current: _Exec, msg_type: Any, content: dict[str, Any], size: int) -> None:
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                current.idle = True
                current.maybe_done()
            return
        output = to_output(msg_type, content)
        if output is not None:
            current.sink(output, size)


def _loads(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw.decode("utf-8", "replace"))
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, list):  # multi-line strings may arrive as a list
        value = "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def to_output(msg_type: Any, content: dict[str, Any]) -> Output | None:
    """One IOPub message to an Output (None for messages that show nothing)."""
    if msg_type == "stream":
        text = clean_text(_text(content.get("text")))
        if not text:
            return None
        return StreamOutput("stderr" if content.get("name") == "stderr" else "stdout", text)
    if msg_type in ("execute_result", "display_data"):
        data = content.get("data")
        if not isinstance(data, dict):
            return None
        png = data.get("image/png")
        if isinstance(png, str):
            try:
                return ImageOutput(base64.b64decode(png, validate=False))
            except (binascii.Error, ValueError):
                return None
        text = _text(data.get("text/plain"))
        return ResultOutput(clean_text(text)) if text else None
    if msg_type == "error":
        tb = content.get("traceback")
        lines = (
            [clean_text(line) for line in tb if isinstance(line, str)]
            if isinstance(tb, list)
            else []
        )
        ename = clean_text(_text(content.get("ename"))) or "Error"
        evalue = clean_text(_text(content.get("evalue")))
        return ErrorOutput(ename, evalue, trim_traceback(lines, ename, evalue))
    return None
