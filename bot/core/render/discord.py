"""Discord markdown: escaped text, fenced code, ≤ 2000 characters a message.

Adapters must still send with ``allowed_mentions=AllowedMentions.none()``; the escaping here
also keeps ``@everyone``, role and user mentions from rendering as mentions at all.
"""

from __future__ import annotations

import re

from bot.core.models import CodeBlock, Inline, Link
from bot.core.render.base import Renderer, sanitize

_MD = re.compile(r"([\\*_~`|>\[\]#<-])")
_MASS = re.compile(r"@(everyone|here)", re.IGNORECASE)
_SAFE_URL = re.compile(r"^https?://", re.IGNORECASE)
ZWSP = "\u200b"
_BACKTICK_PAIR = re.compile(r"`(?=`)")


def escape(text: str) -> str:
    text = _MD.sub(r"\\\1", sanitize(text))
    return _MASS.sub("@" + ZWSP + r"\1", text)


def no_pings(text: str) -> str:
    """Break @everyone/@here and <@user>/<@&role> mentions, even inside code."""
    return _MASS.sub("@" + ZWSP + r"\1", sanitize(text)).replace("<@", "<@" + ZWSP)


def _fence_safe(text: str) -> str:
    """Code may not close its own fence, nor carry a mention."""
    text = _BACKTICK_PAIR.sub("`" + ZWSP, no_pings(text))  # no two backticks in a row
    return text + ZWSP if text.endswith("`") else text


class DiscordRenderer(Renderer):
    name = "discord"
    limit = 2000
    max_messages = 3

    def inline(self, part: Inline) -> str:
        if isinstance(part, Link):
            if not _SAFE_URL.match(part.url):
                return escape(f"{part.text} ({part.url})")
            url = sanitize(part.url).replace(")", "%29").replace(" ", "%20")
            return f"[{escape(part.text)}](<{url}>)"
        if part.style == "code":
            body = no_pings(part.text).replace("`", "ˋ")
            return f"`{body}`" if body.strip() else escape(part.text)
        text = escape(part.text)
        if part.style == "bold":
            return f"**{text}**" if text.strip() else text
        if part.style == "italic":
            return f"*{text}*" if text.strip() else text
        return text

    def code_block(self, block: CodeBlock) -> str:
        lang = re.sub(r"[^a-z0-9+#-]", "", block.language.lower())[:20]
        return f"```{lang}\n{_fence_safe(block.code)}\n```"
