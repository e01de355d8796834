"""A core :class:`Reply` as Discord messages: text or embeds, attachments within the limits.

* ``reply.title`` set → one embed a message (title, description ≤ 4096, colour by tone);
  otherwise plain messages from :class:`DiscordRenderer` (≤ 2000 characters, code blocks
  closed and reopened, never broken; too long → ``reply.txt``).
* images and files ride on the last message, at most 10 a message and never more bytes a
  message than the upload limit (``Interaction.filesize_limit``); a file over the limit is
  left out with a note instead of failing the whole reply.
* everything is sent with ``AllowedMentions.none()`` (see :data:`NO_MENTIONS`).
"""

from __future__ import annotations

import dataclasses
import io
import re
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.core.models import Attachment, Image, Reply
from bot.core.render.base import sanitize, units
from bot.core.render.discord import DiscordRenderer, escape

NO_MENTIONS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
MAX_FILES = 10
DEFAULT_FILESIZE_LIMIT = 10 * 1024 * 1024  # Discord's default upload limit (10 MiB)
TONE_COLOURS: dict[str, int] = {
    "ok": 0x57F287,  # green
    "warn": 0xF0B232,  # amber
    "error": 0xED4245,  # red
    "info": 0x5865F2,  # blurple
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class EmbedRenderer(DiscordRenderer):
    """Discord markdown for an embed description: the same markup, a 4096 limit."""

    limit = EMBED_DESCRIPTION_LIMIT
    max_messages = 3


@dataclass(frozen=True, slots=True)
class FilePart:
    filename: str
    data: bytes
    description: str = ""

    def to_file(self) -> discord.File:
        return discord.File(
            io.BytesIO(self.data), filename=self.filename, description=self.description or None
        )


@dataclass(slots=True)
class Outgoing:
    """One Discord message to send: content or an embed, plus attachments."""

    content: str | None = None
    embed: discord.Embed | None = None
    files: list[FilePart] = field(default_factory=list)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``send_message`` / ``followup.send`` / ``channel.send``.

        Files are fresh objects on every call: a retried send never reuses a consumed stream.
        """
        out: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if self.content:
            out["content"] = self.content
        if self.embed is not None:
            out["embed"] = self.embed
        if self.files:
            out["files"] = [f.to_file() for f in self.files]
        return out


def safe_filename(name: str, taken: set[str]) -> str:
    stem = _SAFE_NAME.sub("_", name).strip("._") or "file"
    stem = stem[-80:]
    candidate, n = stem, 1
    while candidate in taken:
        base, dot, ext = stem.rpartition(".")
        candidate = f"{base}-{n}.{ext}" if dot else f"{stem}-{n}"
        n += 1
    taken.add(candidate)
    return candidate


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} B"


def _parts(images: tuple[Image, ...], files: tuple[Attachment, ...]) -> list[FilePart]:
    taken: set[str] = set()
    out = [
        FilePart(safe_filename(i.filename, taken), i.png, sanitize(i.caption)[:1024])
        for i in images
    ]
    out += [
        FilePart(safe_filename(f.filename, taken), f.data, sanitize(f.description)[:1024])
        for f in files
    ]
    return out


def _embed(title: str | None, description: str, tone: str) -> discord.Embed:
    embed = discord.Embed(
        description=description or None, colour=TONE_COLOURS.get(tone, TONE_COLOURS["info"])
    )
    if title:
        clean = sanitize(title).strip()
        if units(clean) > EMBED_TITLE_LIMIT:
            clean = clean[:EMBED_TITLE_LIMIT]
            while units(clean) > EMBED_TITLE_LIMIT - 1:
                clean = clean[:-1]
            clean += "…"
        embed.title = clean
    return embed


def build(reply: Reply, filesize_limit: int = DEFAULT_FILESIZE_LIMIT) -> list[Outgoing]:
    """The Discord messages for one reply, in order; never empty."""
    if reply.title:
        rendered = EmbedRenderer().render(dataclasses.replace(reply, title=None))
        texts = [m for m in rendered.messages if m != "(empty reply)"] or [""]
        outs = [
            Outgoing(embed=_embed(reply.title if i == 0 else None, text, reply.tone))
            for i, text in enumerate(texts)
        ]
    else:
        rendered = DiscordRenderer().render(reply)
        outs = [Outgoing(content=m) for m in rendered.messages]

    limit = max(1, filesize_limit)
    parts = _parts(rendered.images, rendered.files)
    fitting = [p for p in parts if len(p.data) <= limit]
    dropped = [p for p in parts if len(p.data) > limit]
    if dropped:
        names = ", ".join(f"{p.filename} ({human_size(len(p.data))})" for p in dropped)
        note = escape(f"(Left out: {names}: over the {human_size(limit)} upload limit here.)")[
            : MESSAGE_LIMIT - 1
        ]
        last = outs[-1]
        if last.content and units(last.content) + 2 + units(note) <= MESSAGE_LIMIT:
            last.content = f"{last.content}\n\n{note}"
        else:
            outs.append(Outgoing(content=note))

    # pack attachments onto the last message, then onto extra messages as needed
    target = outs[-1]
    used = 0
    for part in fitting:
        if len(target.files) >= MAX_FILES or used + len(part.data) > limit:
            target = Outgoing()
            outs.append(target)
            used = 0
        target.files.append(part)
        used += len(part.data)

    # the first image of an embed reply shows inside the embed when they share a message
    images = {p.filename for p in _parts(rendered.images, ())}
    for out in outs:
        if out.embed is not None and out.embed.image.url is None:
            first = next((f for f in out.files if f.filename in images), None)
            if first is not None:
                out.embed.set_image(url=f"attachment://{first.filename}")
    return outs


def plain(text: str) -> Outgoing:
    """A short adapter-made notice (escaped; pings nobody)."""
    return Outgoing(content=escape(text)[:MESSAGE_LIMIT])
