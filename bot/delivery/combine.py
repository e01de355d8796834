"""Several people's answers as one message, and their plots as one labelled contact sheet.

When a busy chat's backlog is larger than its budget (a Telegram group: 20 messages a
minute), the scheduler combines the answers that are ready into one message per interval.
Each part is headed by the asker's name (user text: the renderer escapes it and never lets it
ping) and keeps its own output, so it still stands on its own for that person.

Images: a combined message carries every plot of its parts on **one contact sheet**: a grid
of numbered tiles, the caption saying whose tile is whose. Telegram is believed to count each
photo of an album as one message against the group's limit (unverified; the fake counts it so),
so fifty plots as albums would take 50 of the group's 20 messages a minute (2.5 minutes of the
budget); a sheet costs one message per interval. A person who needs their plot at full size
can /run in a private chat with the bot.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.models import Block, Reply, Tone, bold, para

TILE_W, TILE_H = 640, 480
LABEL_H = 34
MAX_TILES = 20  # per sheet (4 x 5 tiles); more make a second sheet
MAX_COLUMNS = 4


@dataclass(frozen=True, slots=True)
class Part:
    """One person's answer in a combined message."""

    who: str
    reply: Reply


def heading(who: str) -> Block:
    return para(bold(who.strip() or "someone"), ":")


def combined_text(parts: Sequence[Part]) -> Reply:
    """The text of a combined answer: each part headed by its asker's name (no images or
    files: the adapter sends those with the part's name)."""
    blocks: list[Block] = []
    for part in parts:
        blocks.append(heading(part.who))
        if part.reply.title:
            blocks.append(para(bold(part.reply.title)))
        blocks.extend(part.reply.blocks)
    tones = {p.reply.tone for p in parts}
    tone: Tone = "error" if "error" in tones else "warn" if "warn" in tones else "info"
    return Reply(blocks=tuple(blocks), tone=tone)


@dataclass(frozen=True, slots=True)
class Tile:
    number: int
    who: str
    png: bytes


def tiles_of(parts: Sequence[Part]) -> list[Tile]:
    out: list[Tile] = []
    for part in parts:
        for image in part.reply.images:
            out.append(Tile(len(out) + 1, part.who, image.png))
    return out


def legend(tiles: Sequence[Tile]) -> str:
    """Plain text naming each tile: ``1 Ama · 2 Kofi · 3 Kofi``."""
    return " · ".join(f"{t.number} {t.who.strip() or 'someone'}" for t in tiles)


def contact_sheet(tiles: Sequence[Tile]) -> bytes:
    """One PNG: the tiles in a grid, each scaled to fit and numbered (the caption names them)."""
    from PIL import Image, ImageDraw, ImageFont

    columns = min(MAX_COLUMNS, max(1, math.ceil(math.sqrt(len(tiles)))))
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * TILE_W, rows * (TILE_H + LABEL_H)), "white")
    draw = ImageDraw.Draw(sheet)
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    try:
        font = ImageFont.load_default(size=24)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    for i, tile in enumerate(tiles):
        x, y = (i % columns) * TILE_W, (i // columns) * (TILE_H + LABEL_H)
        draw.text((x + 8, y + 4), f"{tile.number}", fill="black", font=font)
        try:
            with Image.open(io.BytesIO(tile.png)) as img:
                picture = img.convert("RGB")
        except Exception:  # a broken image still gets its numbered tile
            draw.text((x + 8, y + LABEL_H + 8), "(image unreadable)", fill="gray", font=font)
            continue
        picture.thumbnail((TILE_W - 8, TILE_H - 8))
        sheet.paste(picture, (x + (TILE_W - picture.width) // 2, y + LABEL_H))
    out = io.BytesIO()
    sheet.save(out, "PNG")
    return out.getvalue()
