"""Discord answers: the first response or follow-ups, short notices, progress lines.

An interaction is answered once (``response``) and then followed up (``followup``, for 15
minutes). When its token is gone (the 3 s window missed, or too late: Discord answers 404, or
401 "Invalid Webhook Token" after 15 minutes) the reply is posted in the channel instead,
headed by the asker's name; when Discord refuses a reply the user gets a short notice with an
error id. After a restart an interaction of the earlier run is answered by its token
(``Webhook.partial``) while that is valid. Every message carries ``allowed_mentions`` none
(:mod:`.replies`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.adapters.discord.replies import (
    DEFAULT_FILESIZE_LIMIT,
    MESSAGE_LIMIT,
    Outgoing,
    build,
    plain,
)
from bot.core.contract import ChatGone
from bot.core.errors import new_error_id
from bot.core.models import Reply
from bot.core.render.base import units
from bot.delivery.models import Undeliverable

log = logging.getLogger("nbhelp.discord")


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Acknowledge now ("thinking…"), answer later by follow-ups."""
    if interaction.response.is_done():
        return
    try:
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)
    except discord.NotFound:
        log.warning("Discord interaction %s expired before it was acknowledged", interaction.id)


async def progress(interaction: discord.Interaction, text: str) -> None:
    """Show a progress line (e.g. a /run waiting in the queue) in the deferred answer."""
    try:
        await interaction.edit_original_response(
            content=text[:MESSAGE_LIMIT], allowed_mentions=discord.AllowedMentions.none()
        )
    except discord.HTTPException:
        log.warning("could not show progress for interaction %s", interaction.id)


async def notice(interaction: discord.Interaction, text: str) -> None:
    """A short "only you can see this" answer that needs no core."""
    kwargs = plain(text).kwargs()
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(**kwargs, ephemeral=True)
        else:
            await interaction.followup.send(**kwargs, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not answer Discord interaction %s: %s", interaction.id, exc)


# -- delivery from the outbox (bot.delivery.dispatch drives these) -----------------------------

TOKEN_TTL_S = 15 * 60  # an interaction token takes follow-ups this long after the interaction
TOKEN_MARGIN_S = 30.0  # not tried this close to its end: the channel is surer
CHANNEL_STEP = 1000  # step numbers of a reply posted in the channel (after the token's)


class Live:
    """An interaction answered by this run of the bot: acknowledged (deferred) or answered
    directly by whichever comes first, under one lock."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.lock = asyncio.Lock()
        self.delivered = asyncio.Event()
        self.progress: str | None = None  # the progress text shown in its deferred message


def _token_gone(exc: discord.HTTPException) -> bool:
    """404 Unknown Webhook / Interaction, or 401 Invalid Webhook Token (code 50027, after 15
    minutes): the token no longer answers."""
    return exc.status in (401, 404)


def _transient(exc: discord.HTTPException) -> bool:
    return exc.status == 429 or exc.status >= 500


async def deliver_live(
    live: Live,
    reply: Reply,
    *,
    who: str,
    view: discord.ui.View | None,
    ephemeral: bool,
    steps: set[int],
) -> int:
    """Answer an interaction of this run: the first response when it is not acknowledged
    yet, else follow-ups; a dead token → the channel. Transient errors raise (retried)."""
    interaction = live.interaction
    limit = getattr(interaction, "filesize_limit", None) or DEFAULT_FILESIZE_LIMIT
    outs = build(reply, limit)
    sent = 0
    async with live.lock:
        for i, out in enumerate(outs):
            if i in steps:
                continue
            kwargs = out.kwargs()
            if view is not None and i == len(outs) - 1:
                kwargs["view"] = view
            try:
                if not interaction.response.is_done():
                    await interaction.response.send_message(**kwargs, ephemeral=ephemeral)
                else:
                    await interaction.followup.send(**kwargs, ephemeral=ephemeral, wait=True)
            except discord.HTTPException as exc:
                if _token_gone(exc):
                    log.warning(
                        "Discord interaction %s expired; answering in the channel", interaction.id
                    )
                    channel = interaction.channel_id
                    return sent + await post_in_channel(
                        interaction.client, channel, outs[i:], who=who, steps=steps
                    )
                if _transient(exc):
                    raise
                await _refused(exc, str(interaction.id), lambda text: notice(interaction, text))
                return sent
            steps.add(i)
            sent += 1
        live.delivered.set()
    return sent


async def deliver_later(
    client: discord.Client,
    route: dict[str, Any],
    reply: Reply,
    *,
    who: str,
    ephemeral: bool,
    steps: set[int],
    now: float,
) -> int:
    """Answer an interaction of an earlier run of the bot (after a restart): a follow-up by
    its token while that is valid (15 minutes), else a post in the channel."""
    outs = build(reply, DEFAULT_FILESIZE_LIMIT)
    channel = route.get("channel_id")
    token, app = route.get("token"), route.get("application_id")
    fresh = now - float(route.get("received_at") or 0) < TOKEN_TTL_S - TOKEN_MARGIN_S
    if not (fresh and token and app):
        return await post_in_channel(client, channel, outs, who=who, steps=steps)
    webhook = discord.Webhook.partial(int(app), str(token), client=client)
    sent = 0
    for i, out in enumerate(outs):
        if i in steps:
            continue
        try:
            await webhook.send(**out.kwargs(), ephemeral=ephemeral, wait=True)
        except discord.HTTPException as exc:
            if _token_gone(exc):
                log.warning("a Discord interaction token expired; answering in the channel")
                return sent + await post_in_channel(client, channel, outs[i:], who=who, steps=steps)
            if _transient(exc):
                raise
            await _refused(
                exc,
                "a token of an earlier run",
                lambda text: webhook.send(**plain(text).kwargs(), ephemeral=True),
            )
            return sent
        steps.add(i)
        sent += 1
    return sent


async def post_in_channel(
    client: discord.Client,
    channel_id: object,
    outs: list[Outgoing],
    *,
    who: str,
    steps: set[int],
) -> int:
    """Post a reply in a channel, headed by the asker's name (escaped: it pings nobody)."""
    if channel_id is None:
        raise Undeliverable("no channel to answer in")
    channel = client.get_partial_messageable(int(str(channel_id)))
    parts = _headed(outs, who) if who else outs
    sent = 0
    for i, out in enumerate(parts):
        step = CHANNEL_STEP + i
        if step in steps:
            continue
        try:
            await channel.send(**out.kwargs())
        except (discord.NotFound, discord.Forbidden) as exc:
            raise ChatGone(f"discord channel {channel_id}: {exc.status} {exc.text}") from exc
        except discord.HTTPException as exc:
            if _transient(exc):
                raise
            raise Undeliverable(f"{exc.status} {exc.text}") from exc
        steps.add(step)
        sent += 1
    return sent


def _headed(outs: list[Outgoing], who: str) -> list[Outgoing]:
    """The messages with ``For <name>:`` on top (in the first one when it fits)."""
    heading = plain(f"For {who.strip() or 'someone'}:").content or ""
    first = outs[0] if outs else Outgoing()
    body = first.content or ""
    if units(heading) + 1 + units(body) > MESSAGE_LIMIT:
        return [Outgoing(content=heading), *outs]
    merged = Outgoing(f"{heading}\n{body}" if body else heading, first.embed, first.files)
    return [merged, *outs[1:]]


async def _refused(
    exc: discord.HTTPException, where: str, tell: Callable[[str], Awaitable[object]]
) -> None:
    error_id = new_error_id()
    log.error(
        "error %s: Discord refused a reply to %s: %s %s", error_id, where, exc.status, exc.text
    )
    with contextlib.suppress(discord.HTTPException):
        await tell(f"Sorry, Discord refused my reply (error {error_id}).")
