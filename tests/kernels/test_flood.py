"""A kernel that floods the bot's side of its sockets costs only its own session.

A kernel can reach its own ZMQ streams and knows its HMAC key, so it can send frames on any
channel, signed or not, during a run or between runs, and write to the sandbox's stderr pipe.
Each attack here is the real thing against a real sandboxed kernel; each test checks that the
flooder is stopped with a clear notice and that another user's session kept working.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.kernels import KernelService, RunStatus
from bot.kernels.process import LocalKernel
from tests.kernels.helpers import Runner

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

# The attack from the issue: 4 MB multipart frames pushed onto the bot's side of the shell
# socket from a thread, forever (bounded here by the kernel's own death).
SHELL_FLOOD = """
import threading, time
k = get_ipython().kernel; s = k.shell_stream
f = list(k._parent_ident["shell"]) + [b"<IDS|MSG>", b"0"*64, b"x"*(4<<20), b"{}", b"{}", b"{}"]
def p():
    while True:
        s.io_loop.add_callback(lambda: s.socket.send_multipart(f, copy=False)); time.sleep(0.002)
threading.Thread(target=p, daemon=True).start()
print("flooding")
"""

# Well-signed IOPub messages with the running cell as parent (not outputs: status spam with a
# large payload) while the cell sleeps: they belong to the run, so they count against it.
SIGNED_IOPUB_FLOOD = """
import threading, time
k = get_ipython().kernel
parent = k.get_parent()
pad = "y" * 1_000_000
def p():
    while True:
        k.session.send(k.iopub_socket, "status", {"execution_state": "busy", "pad": pad},
                       parent=parent)
threading.Thread(target=p, daemon=True).start()
time.sleep(25)
print("never")
"""

# ipykernel captures file descriptor 2 into IOPub but keeps a copy of the original, which is
# the sandbox's stderr pipe to the bot.
STDERR_FLOOD = """
import sys, os
fd = sys.stderr._original_stdstream_copy
chunk = b"z" * 1_000_000
for _ in range(200):
    os.write(fd, chunk)
print("wrote")
"""


def kernel_of(service: KernelService, run: Runner) -> LocalKernel:
    kernel = service._sessions[run.session].kernel
    assert isinstance(kernel, LocalKernel)
    return kernel


async def test_a_flood_between_runs_stops_only_the_flooder(module_service: KernelService) -> None:
    flooder = Runner(module_service, "flood:shell")
    bystander = Runner(module_service, "flood:bystander")
    await bystander.ok("kept = 'still here'")
    assert await flooder.ok(SHELL_FLOOD) == "flooding\n"
    kernel = kernel_of(module_service, flooder)
    # While the kernel floods, another user's run is answered from the same bot.
    assert await bystander.ok("print(kept)") == "still here\n"
    await asyncio.wait_for(kernel.exited.wait(), 120)  # the bot killed the flooder's kernel
    assert kernel.flood is not None and kernel.flood.startswith("flood: its kernel sent more than")
    conn = kernel.conn
    assert conn is not None and conn.stray_bytes > conn.stray_limit
    # The bot stopped reading at the budget: it took in at most one message more than that.
    assert conn.stray_bytes <= conn.stray_limit + conn.max_msg_bytes
    result = await flooder("print('next')")
    assert result.status is RunStatus.OK and result.text == "next\n" and result.session_reset
    assert result.notices[0].startswith("Your previous session was stopped: its kernel sent")
    assert result.notices[0].endswith("between runs (a flood). This is a fresh one.")
    assert await bystander.ok("print(kept)") == "still here\n"


async def test_a_signed_flood_during_a_run_ends_the_run(module_service: KernelService) -> None:
    flooder = Runner(module_service, "flood:iopub")
    bystander = Runner(module_service, "flood:bystander2")
    await bystander.ok("kept = 'still here'")
    result, answer = await asyncio.gather(flooder(SIGNED_IOPUB_FLOOD), bystander.ok("print(kept)"))
    assert answer == "still here\n"
    assert result.status is RunStatus.OUTPUT_LIMIT and result.session_reset
    assert "while your code ran (a flood)" in result.notices[0]
    assert "never" not in result.text


async def test_a_flood_of_the_stderr_pipe_stops_the_kernel(module_service: KernelService) -> None:
    flooder = Runner(module_service, "flood:stderr")
    await flooder.ok("pass")
    kernel = kernel_of(module_service, flooder)
    result = await flooder(STDERR_FLOOD)
    assert result.session_reset and result.status is RunStatus.OUTPUT_LIMIT
    assert "wrote more than" in result.notices[0] and "(a flood)" in result.notices[0]
    assert kernel.stderr_bytes <= 4 * kernel.conn.max_msg_bytes + (1 << 20)  # type: ignore[union-attr]
