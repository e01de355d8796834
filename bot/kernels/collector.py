"""Collects one run's outputs under the output limits."""

from __future__ import annotations

import asyncio

from bot.kernels.formatting import collapse_carriage_returns
from bot.kernels.models import (
    ErrorOutput,
    ImageOutput,
    KernelLimits,
    Output,
    ResultOutput,
    StreamOutput,
)


class _Stream:
    __slots__ = ("chunks", "name")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.chunks = [text]


NO_INPUT = (
    "input() does not work here: there is no keyboard in a chat. "
    "Put the values in your code instead, e.g. name = 'Ama'."
)


class Collector:
    """The sink of one execution.

    Text (streams, values, tracebacks) is capped at ``output_bytes``; past it the text is cut,
    capture stops and ``limit_hit`` is set so the service interrupts the kernel. Images beyond
    ``max_images`` or over ``max_image_bytes`` are dropped and counted. Raw message traffic is
    capped too, so a flood of dropped images still counts as a flood.
    """

    def __init__(self, limits: KernelLimits) -> None:
        self.limits = limits
        self._items: list[Output | _Stream] = []
        self.text_bytes = 0
        self.wire_bytes = 0
        self.images = 0
        self.images_dropped = 0
        self.large_images = 0
        self.truncated = False
        self.stopped = False
        self.limit_hit = asyncio.Event()
        self.wire_cap = limits.output_bytes + max(limits.max_images, 1) * limits.max_image_bytes * 2

    def __call__(self, output: Output, size: int) -> None:
        if self.stopped:
            return
        self.wire_bytes += size
        if isinstance(output, ImageOutput):
            self._add_image(output)
        else:
            self._add_text(output)
        if self.wire_bytes > self.wire_cap:
            self._hit_limit()

    def stop(self) -> None:
        """Capture nothing more (the run is being interrupted or killed)."""
        self.stopped = True

    def _hit_limit(self) -> None:
        self.truncated = True
        self.stopped = True
        self.limit_hit.set()

    def _add_image(self, output: ImageOutput) -> None:
        if len(output.png) > self.limits.max_image_bytes:
            self.large_images += 1
            self.images_dropped += 1
        elif self.images >= self.limits.max_images:
            self.images_dropped += 1
        else:
            self.images += 1
            self._items.append(output)

    def _add_text(self, output: Output) -> None:
        size = len(_text_of(output).encode())
        room = self.limits.output_bytes - self.text_bytes
        if size > room:
            output = _cut(output, room)
            self.text_bytes = self.limits.output_bytes
            self._append(output)
            self._hit_limit()
            return
        self.text_bytes += size
        self._append(output)

    def _append(self, output: Output) -> None:
        if isinstance(output, StreamOutput):
            last = self._items[-1] if self._items else None
            if isinstance(last, _Stream) and last.name == output.name:
                last.chunks.append(output.text)
            else:
                self._items.append(_Stream(output.name, output.text))
            return
        self._items.append(output)

    def outputs(self, *, interrupted: bool = False) -> tuple[Output, ...]:
        """The final outputs: streams merged, ``\\r`` progress collapsed, our own
        KeyboardInterrupt dropped, ``input()`` explained."""
        result: list[Output] = []
        for item in self._items:
            if isinstance(item, _Stream):
                text = collapse_carriage_returns("".join(item.chunks))
                if text:
                    result.append(
                        StreamOutput("stderr" if item.name == "stderr" else "stdout", text)
                    )
            elif isinstance(item, ErrorOutput):
                if interrupted and item.ename == "KeyboardInterrupt":
                    continue
                if item.ename == "StdinNotImplementedError":
                    item = ErrorOutput(item.ename, NO_INPUT, f"{item.ename}: {NO_INPUT}")
                result.append(item)
            else:
                result.append(item)
        return tuple(result)


def _text_of(output: Output) -> str:
    if isinstance(output, StreamOutput | ResultOutput):
        return output.text
    if isinstance(output, ErrorOutput):
        return output.traceback
    return ""


def _cut(output: Output, room: int) -> Output:
    def cut(text: str) -> str:
        return text.encode()[: max(room, 0)].decode("utf-8", "ignore")

    if isinstance(output, StreamOutput):
        return StreamOutput(output.name, cut(output.text))
    if isinstance(output, ResultOutput):
        return ResultOutput(cut(output.text))
    if isinstance(output, ErrorOutput):
        return ErrorOutput(output.ename, output.evalue, cut(output.traceback))
    return output
