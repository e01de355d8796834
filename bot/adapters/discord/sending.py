"""Discord answers: the first response or follow-ups, short notices, progress lines.

An interaction is answered once (``response``) and then followed up (``followup``, for 15
minutes). When its token is gone (the 3 s window missed, or too late) the reply is posted in
the channel instead; when Discord refuses a reply the user gets a short notice with an error
id. Every message carries ``allowed_mentions`` none (:mod:`.replies`).
"""

from __future__ import annotations

import logging

import discord

from bot.adapters.discord.replies import (
    DEFAULT_FILESIZE_LIMIT,
    MESSAGE_LIMIT,
    Outgoing,
    build,
    plain,
)
from bot.core.errors import new_error_id
from bot.core.models import Reply

log = logging.getLogger("nbhelp.discord")


async def defer(interaction: discord.Interaction) -> None:
    """Acknowledge now ("thinking…"), answer later by follow-ups."""
    if interaction.response.is_done():
        return
    try:
        await interaction.response.defer(thinking=True)
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


async def send_reply(
    interaction: discord.Interaction,
    reply: Reply,
    *,
    view: discord.ui.View | None,
    ephemeral: bool,
) -> None:
    """Send a whole reply as the response and follow-ups; ``view`` on the last message."""
    limit = getattr(interaction, "filesize_limit", None) or DEFAULT_FILESIZE_LIMIT
    outs = build(reply, limit)
    for i, out in enumerate(outs):
        kwargs = out.kwargs()
        if view is not None and i == len(outs) - 1:
            kwargs["view"] = view
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(**kwargs, ephemeral=ephemeral)
            else:
                await interaction.followup.send(**kwargs, ephemeral=ephemeral, wait=True)
        except discord.NotFound:
            # the interaction token is gone (missed window or > 15 min): post in the channel
            log.warning("Discord interaction %s expired; answering in the channel", interaction.id)
            await to_channel(interaction, outs[i:])
            return
        except discord.HTTPException as exc:
            error_id = new_error_id()
            log.error(
                "error %s: Discord refused a reply to %s: %s %s",
                error_id,
                interaction.id,
                exc.status,
                exc.text,
            )
            await notice(interaction, f"Sorry, Discord refused my reply (error {error_id}).")
            return


async def to_channel(interaction: discord.Interaction, outs: list[Outgoing]) -> None:
    """Post messages in the interaction's channel (its token no longer works)."""
    if interaction.channel_id is None:
        return
    client: discord.Client = interaction.client
    channel = client.get_partial_messageable(interaction.channel_id)
    try:
        for out in outs:
            await channel.send(**out.kwargs())
    except discord.HTTPException as exc:
        log.warning("could not post in channel %s either: %s", interaction.channel_id, exc)
