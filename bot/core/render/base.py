"""Shared rendering: split a reply into messages within a platform's limit.

Splitting works on the semantic blocks, never on rendered markup: a block that does not fit
is cut into smaller blocks of the same kind (a code block by lines, then by characters) and
each is rendered on its own, so a code block is always closed and reopened, never broken.
When a reply needs more than ``max_messages`` messages, the first part is sent and the whole
reply is attached as a text file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from bot.core.models import (
    Attachment,
    Block,
    BulletList,
    CodeBlock,
    Inline,
    Link,
    Paragraph,
    Rendered,
    Reply,
    Span,
)
from bot.text import clean

T = TypeVar("T")
sanitize = clean  # the one implementation lives in bot.text


def units(text: str) -> int:
    """Length as chat platforms count it (UTF-16 code units, never fewer than code points)."""
    return len(text.encode("utf-16-le")) // 2


def plain_inline(part: Inline) -> str:
    if isinstance(part, Link):
        return part.text if part.text == part.url else f"{part.text} ({part.url})"
    return part.text


def plain_text(reply: Reply) -> str:
    """The whole reply as plain text (for the attached file when it is too long)."""
    out: list[str] = []
    if reply.title:
        out.append(sanitize(reply.title))
    for block in reply.blocks:
        if isinstance(block, Paragraph):
            out.append(sanitize("".join(plain_inline(p) for p in block.parts)))
        elif isinstance(block, BulletList):
            out.append(
                "\n".join(
                    (f"{i}. " if block.numbered else "• ")
                    + sanitize("".join(plain_inline(p) for p in item))
                    for i, item in enumerate(block.items, 1)
                )
            )
        else:
            out.append(sanitize(block.code))
    return "\n\n".join(out) + "\n"


def visible(block: Block) -> bool:
    """Whether a block shows anything once rendered."""
    if isinstance(block, CodeBlock):
        return bool(sanitize(block.code).strip())
    if isinstance(block, BulletList):
        return bool(block.items)
    return any(sanitize(plain_inline(p)).strip() for p in block.parts)


def _cut_text(text: str, n: int) -> list[str]:
    """Cut text into about ``n`` parts of similar length, at spaces where possible."""
    size = max(1, -(-len(text) // n))
    out: list[str] = []
    while len(text) > size:
        cut = text.rfind(" ", size // 2, size + 1)
        cut = size if cut <= 0 else cut
        out.append(text[:cut])
        text = text[cut:]
    return [*out, text] if text else out


def _groups(items: Sequence[T], n: int, weight: Callable[[T], int]) -> list[list[T]]:
    """Split items, in order, into at most ``n`` groups of similar total weight."""
    total = sum(weight(x) for x in items) or 1
    target = total / n
    groups: list[list[T]] = [[]]
    acc = 0
    for x in items:
        if groups[-1] and acc + weight(x) > target and len(groups) < n:
            groups.append([])
            acc = 0
        groups[-1].append(x)
        acc += weight(x)
    return groups


def split_block(block: Block, n: int = 2) -> list[Block]:
    """Cut a block into ``n`` (at least two) smaller blocks of the same meaning."""
    n = max(2, n)
    if isinstance(block, CodeBlock):
        lines = block.code.split("\n")
        if len(lines) > 1:
            line_groups = _groups(lines, min(n, len(lines)), lambda line: len(line) + 1)
            return [CodeBlock("\n".join(g), block.language) for g in line_groups]
        return [CodeBlock(t, block.language) for t in _cut_text(block.code, n)]
    if isinstance(block, BulletList):
        if len(block.items) > 1:
            item_groups = _groups(
                block.items,
                min(n, len(block.items)),
                lambda it: sum(len(plain_inline(p)) for p in it),
            )
            return [BulletList(tuple(g), block.numbered) for g in item_groups]
        return [Paragraph((Span("• "), *block.items[0]))] if block.items else []
    parts = block.parts
    if len(parts) > 1:
        part_groups = _groups(parts, min(n, len(parts)), lambda p: len(plain_inline(p)))
        return [Paragraph(tuple(g)) for g in part_groups]
    if not parts:
        return []
    only = parts[0]
    if isinstance(only, Link):
        only = Span(plain_inline(only))
    return [Paragraph((Span(t, only.style),)) for t in _cut_text(only.text, n)]


class Renderer(ABC):
    """Renders a reply for one platform. Subclasses supply inline and block markup."""

    name: str = "plain"
    limit: int = 4000  # per message, in UTF-16 units
    max_messages: int = 3
    separator: str = "\n\n"

    @abstractmethod
    def inline(self, part: Inline) -> str: ...

    @abstractmethod
    def code_block(self, block: CodeBlock) -> str: ...

    def title(self, text: str) -> str:
        return self.inline(Span(text, "bold"))

    def paragraph(self, block: Paragraph) -> str:
        return "".join(self.inline(p) for p in block.parts)

    def bullet_list(self, block: BulletList) -> str:
        lines = []
        for i, item in enumerate(block.items, 1):
            mark = f"{i}. " if block.numbered else "• "
            lines.append(mark + "".join(self.inline(p) for p in item))
        return "\n".join(lines)

    def block(self, block: Block) -> str:
        if isinstance(block, Paragraph):
            return self.paragraph(block)
        if isinstance(block, BulletList):
            return self.bullet_list(block)
        return self.code_block(block)

    # -- splitting and packing --------------------------------------------------------------

    def pieces(self, block: Block, depth: int = 0) -> list[str]:
        if not visible(block):  # e.g. an empty code block: Telegram refuses "<pre></pre>"
            return []
        text = self.block(block)
        if units(text) <= self.limit:
            return [text] if text.strip() else []
        if depth > 64:  # cannot happen for sane limits; never loop forever
            return []
        out: list[str] = []
        for sub in split_block(block, -(-units(text) * 10 // (self.limit * 9))):
            out.extend(self.pieces(sub, depth + 1))
        return out

    def pack(self, pieces: list[str]) -> list[str]:
        messages: list[str] = []
        current = ""
        for piece in pieces:
            candidate = f"{current}{self.separator}{piece}" if current else piece
            if units(candidate) <= self.limit:
                current = candidate
            else:
                if current:
                    messages.append(current)
                current = piece
        if current:
            messages.append(current)
        return messages

    def render(self, reply: Reply) -> Rendered:
        pieces: list[str] = []
        if reply.title:
            pieces.extend(self.pieces(Paragraph((Span(sanitize(reply.title), "bold"),))))
        for block in reply.blocks:
            pieces.extend(self.pieces(block))
        messages = self.pack(pieces)
        files = reply.files
        if len(messages) > self.max_messages:
            note = self.paragraph(
                Paragraph(
                    (Span("… the full reply is attached as ", "italic"), Span("reply.txt", "code"))
                )
            )
            head = (
                self.pack([*pieces[:1], note])
                if units(pieces[0]) + units(note) + 2 <= self.limit
                else [note]
            )
            messages = head[:1]
            files = (
                Attachment(plain_text(reply).encode("utf-8"), "reply.txt", "the full reply"),
                *files,
            )
        if not messages and not reply.images and not files:
            messages = ["(empty reply)"]
        return Rendered(tuple(messages), reply.images, files, reply.ephemeral)
