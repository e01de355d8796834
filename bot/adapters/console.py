"""The console adapter: an interactive terminal chat and the one-shot ``ask``.

Replies are rendered exactly as a chat would show them (plain text, ANSI bold on a terminal);
images and files are written to the output folder and their paths printed.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
import time
from pathlib import Path
from typing import TextIO

from bot.core.app import Core
from bot.core.models import Reply
from bot.core.render import ConsoleRenderer

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
PROMPT = "you> "


class ConsoleAdapter:
    platform = "console"

    def __init__(
        self, core: Core, out_dir: Path, *, color: bool = False, stream: TextIO | None = None
    ) -> None:
        self.core = core
        self.out_dir = out_dir
        self.renderer = ConsoleRenderer(color=color)
        self.stream = stream or sys.stdout
        self.user = getpass.getuser() if hasattr(getpass, "getuser") else "you"

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
            platform=self.platform,
            chat_id=self.user,
            user_id=self.user,
            display_name=self.user,
            is_private=True,
        )
        return "" if reply is None else self.show(reply)

    def print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    async def run(self, stdin: TextIO | None = None) -> None:
        stdin = stdin or sys.stdin
        loop = asyncio.get_running_loop()
        self.print("nbhelp console — type /help, or /quit to leave.")
        while True:
            self.stream.write(PROMPT)
            self.stream.flush()
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:  # EOF
                self.print("")
                return
            text = line.strip()
            if text in ("/quit", "/exit"):
                return
            if not text:
                continue
            self.print("bot> " + (await self.ask(text)).replace("\n", "\n     "))
