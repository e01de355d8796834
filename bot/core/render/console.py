"""The terminal: plain text, optional ANSI bold, code blocks indented."""

from __future__ import annotations

from bot.core.models import CodeBlock, Inline, Link
from bot.core.render.base import Renderer, sanitize

BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


class ConsoleRenderer(Renderer):
    name = "console"
    limit = 8000
    max_messages = 4
    separator = "\n\n"

    def __init__(self, color: bool = False) -> None:
        self.color = color

    def inline(self, part: Inline) -> str:
        if isinstance(part, Link):
            text, url = sanitize(part.text), sanitize(part.url)
            return text if text == url else f"{text} <{url}>"
        text = sanitize(part.text)
        if part.style == "bold" and self.color and text.strip():
            return f"{BOLD}{text}{RESET}"
        if part.style == "code":
            return f"`{text}`" if not self.color else f"{DIM}{text}{RESET}"
        return text

    def code_block(self, block: CodeBlock) -> str:
        return "\n".join("    " + line for line in sanitize(block.code).split("\n"))
