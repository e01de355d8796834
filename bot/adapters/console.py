"""The console adapter: an interactive terminal chat and the one-shot ``ask``.

Replies are rendered exactly as a chat would show them (plain text, ANSI bold on a terminal);
images and files are written to the output folder and their paths printed. Outage alerts for
a subscribed console chat are printed between prompts.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.core.app import Core
from bot.core.models import Reply, para
from bot.core.render import ConsoleRenderer

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
PROMPT = "you> "


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        core: Core,
        out_dir: Path,
        *,
        color: bool = False,
        stream: TextIO | None = None,
        stdin: TextIO | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self.out_dir = out_dir
        self.renderer = ConsoleRenderer(color=color)
        self.stream = stream or sys.stdout
        self.stdin = stdin or sys.stdin
        self.on_exit = on_exit
        self.user = getpass.getuser()
        self._task: asyncio.Task[None] | None = None
        self._started = False

    # -- rendering ------------------------------------------------------------------------
    def save(self, name: str, data: bytes) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = _SAFE_NAME.sub("_", name).strip("._") or "file"
        path = self.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"
        n = 1
        while path.exists():
            path = self.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}-{stem}"
            n += 1
        path.write_bytes(data)
        return path

    def show(self, reply: Reply) -> str:
        """Render a reply, save its attachments, return the text to print."""
        rendered = self.renderer.render(reply)
        parts = list(rendered.messages)
        for image in rendered.images:
            caption = f" — {image.caption}" if image.caption else ""
            parts.append(f"[image saved: {self.save(image.filename, image.png)}{caption}]")
        for f in rendered.files:
            desc = f" — {f.description}" if f.description else ""
            parts.append(f"[file saved: {self.save(f.filename, f.data)}{desc}]")
        return "\n\n".join(parts)

    async def ask(self, text: str) -> str:
        reply = await self.core.handle_text(
            text,
            platform=self.name,
            chat_id=self.user,
            user_id=self.user,
            display_name=self.user,
            is_private=True,
            notify=self._notify,
            patient=True,
        )
        return "" if reply is None else self.show(reply)

    async def _notify(self, text: str) -> None:
        self.print(self.renderer.render(Reply.of(para(text))).messages[0])

    def print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # -- the adapter contract -------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """A terminal is always there: True once started."""
        return self._started

    async def start(self) -> None:
        self.core.attach(self)
        self._task = asyncio.create_task(self._chat(), name="nbhelp-console")
        self._started = True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        self.print("\n🔔 " + self.show(reply).replace("\n", "\n   "))

    async def _chat(self) -> None:
        try:
            await self.run()
        finally:
            if self.on_exit is not None:
                self.on_exit()

    # -- the chat loop --------------------------------------------------------------------
    async def run(self) -> None:
        lines = self._reader()
        self.print("nbhelp console — type /help, or /quit to leave.")
        while True:
            self.stream.write(PROMPT)
            self.stream.flush()
            line = await lines.get()
            if line is None:  # EOF
                self.print("")
                return
            text = line.strip()
            if text in ("/quit", "/exit"):
                return
            if text:
                self.print("bot> " + (await self.ask(text)).replace("\n", "\n     "))

    def _reader(self) -> asyncio.Queue[str | None]:
        """Lines from stdin, read on a daemon thread so a blocked read never holds up exit."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:
            try:
                for line in iter(self.stdin.readline, ""):
                    loop.call_soon_threadsafe(queue.put_nowait, line)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except (RuntimeError, ValueError):  # the loop or stdin closed: the chat is over
                return

        threading.Thread(target=read, name="nbhelp-stdin", daemon=True).start()
        return queue
