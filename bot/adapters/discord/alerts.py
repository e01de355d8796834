"""Outage alerts posted in a Discord channel (or DM channel), nothing lost under rate limits.

discord.py waits out each 429 (``retry_after``, global or per route) up to five times; this
retries around that (Discord's ``Retry-After`` when it gives one, else
:class:`bot.retry.Backoff`) so a broadcast loses nothing. A deleted channel (404) or one that
forbids the bot (403) raises :class:`ChatGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from bot.adapters.discord.replies import DEFAULT_FILESIZE_LIMIT, build
from bot.core.contract import ChatGone
from bot.core.models import Reply
from bot.retry import Backoff

log = logging.getLogger("nbhelp.discord")

ALERT_ATTEMPTS = 6  # around discord.py's own 5 tries on 429 / 5xx
RETRY_INITIAL_S = 0.5  # waits when Discord names none: 0.5 s, doubled, up to RETRY_MAX_S
RETRY_MAX_S = 8.0
RETRY_AFTER_MAX_S = 60.0


async def send_alert(client: discord.Client, chat_id: str, reply: Reply) -> None:
    """Post ``reply`` in channel ``chat_id`` through ``client``."""
    try:
        channel = client.get_partial_messageable(int(chat_id))
    except ValueError:
        log.warning("discord chat id %r is not a channel id; dropping it", chat_id)
        raise ChatGone(chat_id) from None
    for out in build(reply, DEFAULT_FILESIZE_LIMIT):
        backoff = Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        for attempt in range(ALERT_ATTEMPTS):
            try:
                await channel.send(**out.kwargs())
                break
            except (discord.NotFound, discord.Forbidden) as exc:
                log.warning(
                    "discord channel %s is gone or forbids the bot (%s %s): unsubscribing",
                    chat_id,
                    exc.status,
                    exc.text,
                )
                raise ChatGone(chat_id) from exc
            except discord.RateLimited as exc:
                await asyncio.sleep(exc.retry_after)
            except discord.HTTPException as exc:
                if attempt == ALERT_ATTEMPTS - 1 or not (exc.status == 429 or exc.status >= 500):
                    raise
                retry_after = retry_after_of(exc) or backoff.next_delay()
                log.info(
                    "alert to discord channel %s: %s, retrying in %.2f s",
                    chat_id,
                    exc.status,
                    retry_after,
                )
                await asyncio.sleep(retry_after)


def retry_after_of(exc: discord.HTTPException) -> float | None:
    """The wait Discord asked for in the response's headers, if any (capped)."""
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        value = headers.get(name)
        if value:
            with contextlib.suppress(ValueError):
                return min(RETRY_AFTER_MAX_S, float(value))
    return None
