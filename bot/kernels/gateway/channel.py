"""One remote kernel: its WebSocket, the run in progress, and what ended it.

Frames are jupyter_server's legacy JSON protocol (no subprotocol requested): one message per
text frame with a ``channel`` key. Replies are matched on ``parent_header.msg_id``; a run is
done when both its ``execute_reply`` (shell) and its ``status: idle`` (iopub) arrived. Outputs
go through :func:`bot.kernels.jupyter.to_output`, the same clean-up the local kernels get.

Everything the gateway sends is treated as hostile input: frame size is capped by aiohttp
(``max_msg_size``: an oversized frame ends the connection), anything not JSON or not a message
is dropped, and traffic outside a run is counted and ends the kernel past a limit.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.kernels.backend import ExecOutcome, ExecReply, KernelHandle, OutputSink
from bot.kernels.jupyter import to_output

PROTOCOL_VERSION = "5.3"


def message(msg_type: str, content: dict[str, Any], session: str, channel: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": session,
            "username": "nbhelp",
            "date": "",
            "version": PROTOCOL_VERSION,
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


def execute_request(code: str, session: str, *, count: bool = True) -> dict[str, Any]:
    content = {
        "code": code,
        "silent": False,
        "store_history": count,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    return message("execute_request", content, session, "shell")


@dataclass(eq=False)
class Run:
    """The execution in progress on a kernel."""

    msg_id: str
    sink: OutputSink
    reply: ExecReply | None = None
    idle: bool = False
    future: asyncio.Future[ExecReply] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def finish(self, reply: ExecReply) -> None:
        if not self.future.done():
            self.future.set_result(reply)

    def maybe_done(self) -> None:
        if self.idle and self.reply is not None:
            self.finish(self.reply)


class GatewayKernel(KernelHandle):
    """A kernel on a gateway, with at most one WebSocket open to it."""

    def __init__(self, kernel_id: str, username: str, *, stray_limit: int) -> None:
        super().__init__(kernel_id)
        self.username = username  # the KERNEL_USERNAME it was started with (not secret)
        self.session_id = uuid.uuid4().hex
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.current: Run | None = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.gone: str | None = None  # why it can no longer be used (None while usable)
        self.closing = False
        self.last_traffic = time.monotonic()
        self.stray_bytes = 0
        self.stray_limit = stray_limit
        self.expect_restart = False
        self.lock = asyncio.Lock()  # one reconnect at a time

    @property
    def alive(self) -> bool:
        return self.gone is None and not self.closing

    @property
    def exit_description(self) -> str | None:
        return self.gone

    def mark_gone(self, why: str, outcome: ExecOutcome = ExecOutcome.DIED) -> None:
        if self.gone is None:
            self.gone = why
        self.fail_current(outcome)

    def fail_current(self, outcome: ExecOutcome) -> None:
        if self.current is not None:
            self.current.finish(ExecReply(outcome))
        for fut in self.pending.values():
            if not fut.done():
                fut.cancel()

    # -- frames ------------------------------------------------------------------------------

    def dispatch(self, raw: str) -> None:
        """Handle one text frame (never raises on bad input)."""
        size = len(raw)
        self.last_traffic = time.monotonic()
        try:
            frame = json.loads(raw)
        except ValueError:
            self._stray(size)
            return
        if not isinstance(frame, dict):
            self._stray(size)
            return
        header = _dict(frame.get("header"))
        parent = _dict(frame.get("parent_header"))
        content = _dict(frame.get("content"))
        channel = frame.get("channel")
        msg_type = header.get("msg_type")
        parent_id = parent.get("msg_id")
        if (
            channel == "iopub"
            and msg_type == "status"
            and not parent_id
            and self._server_status(content.get("execution_state"))
        ):
            return
        current = self.current
        if current is not None and isinstance(parent_id, str) and parent_id == current.msg_id:
            self._on_run_message(current, channel, msg_type, content, size)
            return
        fut = self.pending.get(parent_id) if isinstance(parent_id, str) else None
        if fut is not None and channel == "shell":
            if not fut.done():
                fut.set_result(content)
            return
        self._stray(size)

    def _server_status(self, state: Any) -> bool:
        """jupyter_server's own status messages (no parent): the kernel restarted or died."""
        if state == "restarting":
            if self.expect_restart:
                return True
            self.mark_gone("the kernel server restarted it, so its variables are gone")
            return True
        if state == "dead":
            self.mark_gone("it died on the kernel server")
            return True
        return False

    def _on_run_message(
        self, current: Run, channel: Any, msg_type: Any, content: dict[str, Any], size: int
    ) -> None:
        if channel == "iopub":
            if msg_type == "status":
                state = content.get("execution_state")
                if state == "idle":
                    current.idle = True
                    current.maybe_done()
                elif state in ("dead", "restarting"):
                    self.mark_gone("it died on the kernel server")
                return
            output = to_output(msg_type, content)
            if output is not None:
                current.sink(output, size)
            return
        if channel == "shell" and msg_type == "execute_reply":
            count = content.get("execution_count")
            current.reply = ExecReply(
                ExecOutcome.FINISHED,
                status=str(content.get("status", ""))[:20],
                execution_count=count if isinstance(count, int) else None,
            )
            current.maybe_done()

    def _stray(self, size: int) -> None:
        self.stray_bytes += size
        if self.stray_bytes > self.stray_limit and self.gone is None:
            self.mark_gone("too much output outside a run", ExecOutcome.BROKEN)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
