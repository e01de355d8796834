"""The Discord adapter (discord.py 2.x slash commands). See :mod:`.adapter` for its parts.

This package is ``bot.adapters.discord``; every import in it is absolute, so ``import
discord`` always means the discord.py library, never this package.
"""

from __future__ import annotations

from bot.adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
