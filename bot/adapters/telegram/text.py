"""Text helpers for Telegram: the plain-text fallback, captions, and reading API errors."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from telegram.error import BadRequest, Forbidden, TelegramError

from bot.core.render import sanitize, units

CAPTION_LIMIT = 1024  # UTF-16 units, after entity parsing
TEXT_LIMIT = 4096
PHOTO_LIMIT = 10 * 1024 * 1024  # bytes a photo may have; bigger images go as documents
FILE_LIMIT = 50 * 1024 * 1024  # bytes a bot may upload as a document

_MENTION = re.compile(r"@(?=\w)")


class _PlainText(HTMLParser):
    """Collects the visible text of Telegram HTML; a link keeps its address in brackets."""

    def __init__(self, show_links: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.show_links = show_links
        self.parts: list[str] = []
        self._links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._links:
            href, start = self._links.pop()
            shown = "".join(self.parts[start:])
            if self.show_links and href and href != shown:
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_plain(markup: str, *, show_links: bool = True) -> str:
    """The text a reader would see, for re-sending without parse mode (with ``show_links``,
    a link's address follows its text, as the link itself is lost)."""
    parser = _PlainText(show_links)
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # malformed beyond the parser's patience: drop anything tag-like
        return re.sub(r"<[^>]*>", "", markup)
    return "".join(parser.parts)


def no_mentions(text: str) -> str:
    """Plain text (no parse mode) makes ``@name`` a notifying mention: break every one."""
    return _MENTION.sub("@\u2060", text)


def plain_caption(text: str, limit: int = CAPTION_LIMIT) -> str:
    """A caption sent without parse mode: sanitised, no pinging mentions, within the limit."""
    text = no_mentions(sanitize(text))
    if units(text) <= limit:
        return text
    return cut(text, limit - 1) + "…"


def cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` UTF-16 units."""
    n = 0
    for i, ch in enumerate(text):
        n += 2 if ord(ch) > 0xFFFF else 1
        if n > limit:
            return text[:i]
    return text


def _msg(exc: TelegramError) -> str:
    return str(exc.message).lower()


def is_parse_error(exc: TelegramError) -> bool:
    """Telegram refused the HTML (``Bad Request: can't parse entities: …``)."""
    return isinstance(exc, BadRequest) and (
        "parse entities" in _msg(exc) or "can't find end" in _msg(exc)
    )


def is_not_modified(exc: TelegramError) -> bool:
    return isinstance(exc, BadRequest) and "not modified" in _msg(exc)


def is_too_long(exc: TelegramError) -> bool:
    return isinstance(exc, BadRequest) and "too long" in _msg(exc)


_GONE = (
    "chat not found",
    "bot was kicked",
    "bot was blocked",
    "user is deactivated",
    "chat was deleted",
    "group chat was deactivated",
    "bot is not a member",
    "peer_id_invalid",
    "need administrator rights in the channel chat",
)


def is_chat_gone(exc: TelegramError) -> bool:
    """The chat is deleted or forbids the bot: its subscriptions should go."""
    if isinstance(exc, Forbidden):
        return True
    return isinstance(exc, BadRequest) and any(s in _msg(exc) for s in _GONE)
