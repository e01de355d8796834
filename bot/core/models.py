"""The platform-neutral message models: one inbound message, one outbound reply.

Adapters turn platform events into :class:`Inbound` and render :class:`Reply` with a
renderer from :mod:`bot.core.render`. Replies are *semantic* (paragraphs, bold, code, lists,
code blocks, links); each renderer decides the markup and escaping of its platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

Platform = Literal["console", "telegram", "discord", "test"]
Tone = Literal["info", "ok", "warn", "error"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One command as any chat platform delivers it."""

    platform: str
    chat_id: str
    user_id: str
    display_name: str
    command: str  # lowercase, without the slash, e.g. "alternatives"
    args: str = ""  # the raw argument text after the command
    is_admin: bool = False  # admin of this chat (always true in a private chat)
    is_private: bool = True
    replied_text: str | None = None  # text of the message this one replies to
    # Where a long-running handler may post a short progress line ("queued: position 2")
    # before its reply; adapters that can show one set it.
    notify: Callable[[str], Awaitable[None]] | None = field(default=None, compare=False, repr=False)
    # The asker waits for a slow answer (a terminal) rather than wanting a quick one (a chat).
    patient: bool = False
    # Called when the request's real work begins (a /run's code starts in its kernel): after
    # a restart, work that had begun is not repeated (see bot.delivery.intake).
    on_started: Callable[[], Awaitable[None]] | None = field(
        default=None, compare=False, repr=False
    )


# --- inline spans ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    style: Literal["plain", "bold", "italic", "code"] = "plain"


@dataclass(frozen=True, slots=True)
class Link:
    text: str
    url: str


Inline = Span | Link


def bold(text: str) -> Span:
    return Span(text, "bold")


def italic(text: str) -> Span:
    return Span(text, "italic")


def code(text: str) -> Span:
    return Span(text, "code")


def link(text: str, url: str) -> Link:
    return Link(text, url)


def codes(items: tuple[str, ...] | list[str], sep: str = ", ") -> tuple[Inline, ...]:
    """``a, b, c`` with each item as inline code."""
    out: list[Inline] = []
    for i, item in enumerate(items):
        if i:
            out.append(Span(sep))
        out.append(Span(item, "code"))
    return tuple(out)


def _spans(parts: tuple[str | Inline, ...]) -> tuple[Inline, ...]:
    return tuple(Span(p) if isinstance(p, str) else p for p in parts)


# --- blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paragraph:
    parts: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class BulletList:
    items: tuple[tuple[Inline, ...], ...]
    numbered: bool = False


@dataclass(frozen=True, slots=True)
class CodeBlock:
    code: str
    language: str = ""


Block = Paragraph | BulletList | CodeBlock


def para(*parts: str | Inline) -> Paragraph:
    return Paragraph(_spans(parts))


def bullets(*items: str | Inline | tuple[str | Inline, ...], numbered: bool = False) -> BulletList:
    out: list[tuple[Inline, ...]] = []
    for item in items:
        out.append(_spans(item) if isinstance(item, tuple) else _spans((item,)))
    return BulletList(tuple(out), numbered)


def codeblock(text: str, language: str = "") -> CodeBlock:
    return CodeBlock(text, language)


# --- attachments and the reply --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Image:
    png: bytes
    filename: str = "image.png"
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    data: bytes
    filename: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    blocks: tuple[Block, ...] = ()
    images: tuple[Image, ...] = ()
    files: tuple[Attachment, ...] = ()
    ephemeral: bool = False  # "only you can see this" where the platform supports it
    tone: Tone = "info"  # adapters may colour by it
    title: str | None = None  # a short heading (embed title on Discord)

    @staticmethod
    def of(*blocks: Block, **kw: object) -> Reply:
        return Reply(blocks=tuple(blocks), **kw)  # type: ignore[arg-type]  # kw are Reply's own fields


@dataclass(frozen=True, slots=True)
class Rendered:
    """A reply rendered for one platform: messages within its limit, plus attachments."""

    messages: tuple[str, ...]
    images: tuple[Image, ...] = ()
    files: tuple[Attachment, ...] = ()
    ephemeral: bool = False
    extra: dict[str, object] = field(default_factory=dict)
