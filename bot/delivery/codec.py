"""A :class:`Reply` and a :class:`Request` as JSON, for the SQLite outbox and inbound record.

Binary parts (images, files) are base64. Decoding refuses what it does not know, so a row
written by a newer version fails loudly instead of sending something half-read.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bot.core.models import (
    Attachment,
    Block,
    BulletList,
    CodeBlock,
    Image,
    Inline,
    Link,
    Paragraph,
    Reply,
    Span,
)
from bot.delivery.models import Request


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _inline(part: Inline) -> list[str]:
    if isinstance(part, Link):
        return ["link", part.text, part.url]
    return [part.style, part.text]


def _from_inline(raw: list[str]) -> Inline:
    if raw[0] == "link":
        return Link(raw[1], raw[2])
    if raw[0] not in ("plain", "bold", "italic", "code"):
        raise ValueError(f"unknown span style {raw[0]!r}")
    return Span(raw[1], raw[0])  # type: ignore[arg-type]  # checked just above


def _block(block: Block) -> dict[str, Any]:
    if isinstance(block, Paragraph):
        return {"p": [_inline(p) for p in block.parts]}
    if isinstance(block, BulletList):
        return {"ul": [[_inline(p) for p in item] for item in block.items], "n": block.numbered}
    return {"code": block.code, "lang": block.language}


def _from_block(raw: dict[str, Any]) -> Block:
    if "p" in raw:
        return Paragraph(tuple(_from_inline(p) for p in raw["p"]))
    if "ul" in raw:
        items = tuple(tuple(_from_inline(p) for p in item) for item in raw["ul"])
        return BulletList(items, bool(raw.get("n")))
    if "code" in raw:
        return CodeBlock(str(raw["code"]), str(raw.get("lang", "")))
    raise ValueError(f"unknown block {sorted(raw)!r}")


def dump_reply(reply: Reply) -> str:
    return json.dumps(
        {
            "blocks": [_block(b) for b in reply.blocks],
            "images": [
                {"png": _b64(i.png), "name": i.filename, "caption": i.caption} for i in reply.images
            ],
            "files": [
                {"data": _b64(f.data), "name": f.filename, "about": f.description}
                for f in reply.files
            ],
            "ephemeral": reply.ephemeral,
            "tone": reply.tone,
            "title": reply.title,
        },
        ensure_ascii=False,
    )


def load_reply(text: str) -> Reply:
    raw = json.loads(text)
    return Reply(
        blocks=tuple(_from_block(b) for b in raw["blocks"]),
        images=tuple(Image(_unb64(i["png"]), i["name"], i["caption"]) for i in raw["images"]),
        files=tuple(Attachment(_unb64(f["data"]), f["name"], f["about"]) for f in raw["files"]),
        ephemeral=bool(raw["ephemeral"]),
        tone=raw["tone"],
        title=raw["title"],
    )


def dump_request(req: Request) -> str:
    return json.dumps(
        {
            "text": req.text,
            "is_private": req.is_private,
            "is_admin": req.is_admin,
            "replied_text": req.replied_text,
            "bot_username": req.bot_username,
            "route": req.route,
        },
        ensure_ascii=False,
    )


def load_request(
    text: str,
    *,
    platform: str,
    key: str,
    chat_id: str,
    user_id: str,
    display_name: str,
    received_at: float,
) -> Request:
    raw = json.loads(text)
    return Request(
        platform=platform,
        key=key,
        chat_id=chat_id,
        user_id=user_id,
        display_name=display_name,
        text=str(raw["text"]),
        is_private=bool(raw["is_private"]),
        is_admin=bool(raw["is_admin"]),
        replied_text=raw.get("replied_text"),
        bot_username=raw.get("bot_username"),
        route=dict(raw.get("route") or {}),
        received_at=received_at,
    )
