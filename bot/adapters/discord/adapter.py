"""The Discord adapter: slash commands in servers and DMs through discord.py 2.x.

The :mod:`bot.core.contract` face over its parts: :mod:`.gateway` (the client: login,
command sync, the gateway task, close), :mod:`.interactions` (slash commands, "Run code",
Re-run buttons, recording each interaction before acknowledging it, the 3-second rule),
:mod:`.sending` (responses, follow-ups, by token after a restart, the channel when the token
is gone), :mod:`.alerts` (outage alerts under rate limits), :mod:`.views` (button and modal),
:mod:`.commands` (slash commands generated from the registry) and :mod:`.replies` (a reply as
Discord messages). This module is the core's :class:`~bot.core.contract.Outlet` for Discord:
answers go out as interaction responses and follow-ups (their own budget, not the channel's),
alerts and answers whose token is gone as channel messages. ``stop()`` refuses new
interactions, lets in-flight answers finish for a few seconds, then closes the gateway and
the HTTP session.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import discord

from bot.adapters.discord import alerts, sending
from bot.adapters.discord.gateway import Gateway
from bot.adapters.discord.interactions import Interactions
from bot.adapters.discord.replies import DEFAULT_FILESIZE_LIMIT, build
from bot.adapters.discord.views import RerunButton
from bot.core.app import Core
from bot.core.contract import AdapterRefused
from bot.core.models import Reply
from bot.delivery.models import Batch, ChatBudget, Parcel, QueueView, Request
from bot.settings import DiscordSettings

log = logging.getLogger("nbhelp.discord")

CONNECT_TIMEOUT_S = 30.0  # start() waits this long for the gateway's READY
STOP_GRACE_S = 6.0  # in-flight answers get this long on stop (runner allows 10 s)


class DiscordAdapter:
    """Discord slash commands for the core (see the module docstring)."""

    name = "discord"

    def __init__(
        self, core: Core, settings: DiscordSettings, *, stop_grace_s: float = STOP_GRACE_S
    ) -> None:
        self.core = core
        self.settings = settings
        self.stop_grace_s = stop_grace_s
        self.interactions = Interactions(core, platform=self.name)
        self.gateway = Gateway(settings, self.interactions)
        self._open = False
        self._stopped = False

    @property
    def connected(self) -> bool:
        """The gateway is READY and the client not closed."""
        return not self._stopped and self.gateway.connected

    async def start(self) -> None:
        if self.gateway.client is not None:
            return
        if self.settings.token is None:
            raise AdapterRefused("NBHELP_DISCORD__TOKEN is not set")
        self.core.attach(self)
        try:
            await self.gateway.open(
                self.settings.token.get_secret_value(), before_connect=self._open_outlet
            )
        except BaseException:
            await self._close_outlet(0.0)
            raise
        if not await self.gateway.wait_ready(CONNECT_TIMEOUT_S):
            await self.stop()
            raise RuntimeError("the Discord gateway connection ended at start (see the log)")

    async def _open_outlet(self) -> None:
        await self.core.open_outlet(self)
        self._open = True

    async def _close_outlet(self, grace_s: float) -> None:
        if self._open:
            self._open = False
            await self.core.close_outlet(self.name, grace_s)

    async def stop(self) -> None:
        if self.gateway.client is None or self._stopped:
            return
        self._stopped = True
        self.interactions.stopping = self.gateway.closing = True
        await self.interactions.drain(self.stop_grace_s)
        await self._close_outlet(self.stop_grace_s)
        await self.gateway.close()
        log.info("discord adapter stopped")

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Post an alert in a channel, in its turn among the channel's replies;
        :class:`ChatGone` when it is gone (see :mod:`.alerts`)."""
        dispatcher = self.core.outlet(self.name) if self._open else None
        if dispatcher is not None:
            await dispatcher.offer(chat_id, reply)
            return
        await alerts.send_alert(self._client(), chat_id, reply)

    def _client(self) -> discord.Client:
        client = self.gateway.client
        if client is None or client.is_closed():
            raise RuntimeError("the Discord adapter is not running")
        return client

    # -- the outlet --------------------------------------------------------------------------

    def budget(self, chat_id: str) -> ChatBudget:
        """Answers go by interaction tokens (their own budget); never combined."""
        return ChatBudget()

    def pack(self, chat_id: str, parcels: Sequence[Parcel], limit: int) -> int:
        return 1

    async def deliver(self, chat_id: str, batch: Batch) -> int:
        parcel = batch.parcels[0]
        client = self._client()
        if parcel.lane == "alert":
            await alerts.send_alert(client, chat_id, parcel.reply)
            return len(build(parcel.reply, DEFAULT_FILESIZE_LIMIT))
        route = parcel.route
        ephemeral = bool(parcel.reply.ephemeral or route.get("ephemeral"))
        live = self.interactions.live.get(str(route.get("interaction_id")))
        if live is not None:
            view = None
            if route.get("rerun_key") and route.get("user_id"):
                view = discord.ui.View(timeout=None)
                view.add_item(RerunButton(int(route["user_id"]), str(route["rerun_key"])))
            sent = await sending.deliver_live(
                live,
                parcel.reply,
                who=parcel.who,
                view=view,
                ephemeral=ephemeral,
                steps=batch.steps,
            )
            self.interactions.live.pop(str(route.get("interaction_id")), None)
            return sent
        return await sending.deliver_later(
            client,
            route,
            parcel.reply,
            who=parcel.who,
            ephemeral=ephemeral,
            steps=batch.steps,
            now=time.time(),
        )

    async def show_progress(self, chat_id: str, view: QueueView) -> int:
        """Each waiting /run's own deferred message says where it is in the channel's queue
        (interaction edits: no channel message is spent)."""
        waiting = view.waiting
        for entry in view.entries:
            live = self.interactions.live.get(str(entry.route.get("interaction_id")))
            if live is None or not live.interaction.response.is_done():
                continue
            if entry.running:
                text = entry.note or "▶ Running your code…"
            else:
                place = next(i for i, w in enumerate(waiting) if w.request_id == entry.request_id)
                text = entry.note or (
                    f"⏳ {len(waiting)} run{'' if len(waiting) == 1 else 's'} queued here · "
                    + ("yours is next" if place == 0 else f"you are number {place + 1}")
                )
            if text != live.progress and not live.delivered.is_set():
                live.progress = text
                await sending.progress(live.interaction, text)
        return 0

    async def is_admin(self, request: Request) -> bool:
        return request.is_admin or request.is_private

    def working(self, request: Request) -> AbstractAsyncContextManager[None]:
        return _nothing()


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
