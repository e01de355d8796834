"""Telegram HTML parse mode: every dynamic string escaped, ≤ 4096 characters a message."""

from __future__ import annotations

import html
import re

from bot.core.models import CodeBlock, Inline, Link
from bot.core.render.base import Renderer, sanitize

_MENTION = re.compile(r"@(?=\w)")
_SAFE_URL = re.compile(r"^(https?://|tg://)", re.IGNORECASE)
_TAGS = {"bold": "b", "italic": "i", "code": "code"}


def escape(text: str) -> str:
    """Escape for Telegram HTML and stop ``@name`` from becoming a mention that notifies."""
    return _MENTION.sub("@\u2060", html.escape(sanitize(text), quote=False))


class TelegramRenderer(Renderer):
    name = "telegram"
    limit = 4096
    max_messages = 3

    def inline(self, part: Inline) -> str:
        if isinstance(part, Link):
            if not _SAFE_URL.match(part.url):
                return escape(f"{part.text} ({part.url})")
            return (
                f'<a href="{html.escape(sanitize(part.url), quote=True)}">{escape(part.text)}</a>'
            )
        tag = _TAGS.get(part.style)
        if part.style == "code":  # no mention neutering inside code: entities are not parsed there
            return f"<code>{html.escape(sanitize(part.text), quote=False)}</code>"
        text = escape(part.text)
        return f"<{tag}>{text}</{tag}>" if tag else text

    def code_block(self, block: CodeBlock) -> str:
        body = html.escape(sanitize(block.code), quote=False)
        lang = re.sub(r"[^a-z0-9+#-]", "", block.language.lower())[:20]
        if lang:
            return f'<pre><code class="language-{lang}">{body}</code></pre>'
        return f"<pre>{body}</pre>"
