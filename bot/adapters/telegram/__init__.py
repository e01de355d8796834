"""Telegram: the adapter (python-telegram-bot, HTML replies, webhook or polling) and its
outbound rate limiter. See :mod:`.adapter` for its parts."""

from bot.adapters.telegram.adapter import TelegramAdapter
from bot.adapters.telegram.ratelimit import Limits, RateLimiter

__all__ = ["Limits", "RateLimiter", "TelegramAdapter"]
