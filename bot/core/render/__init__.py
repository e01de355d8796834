"""Per-platform renderers of the reply model (see :mod:`bot.core.render.base`)."""

from __future__ import annotations

from bot.core.render.base import Renderer, plain_text, sanitize, units
from bot.core.render.console import ConsoleRenderer
from bot.core.render.discord import DiscordRenderer
from bot.core.render.telegram import TelegramRenderer

__all__ = [
    "ConsoleRenderer",
    "DiscordRenderer",
    "Renderer",
    "TelegramRenderer",
    "plain_text",
    "sanitize",
    "units",
]
