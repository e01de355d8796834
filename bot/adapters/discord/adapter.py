"""The Discord adapter: slash commands in servers and DMs through discord.py 2.x.

The :mod:`bot.core.contract` face over its parts: :mod:`.gateway` (the client: login,
command sync, the gateway task, close), :mod:`.interactions` (slash commands, "Run code",
Re-run buttons, the 3-second acknowledgement rule), :mod:`.sending` (responses and
follow-ups), :mod:`.alerts` (outage alerts under rate limits), :mod:`.views` (button and
modal), :mod:`.commands` (slash commands generated from the registry) and :mod:`.replies`
(a reply as Discord messages). ``stop()`` refuses new interactions, lets in-flight answers
finish for a few seconds, then closes the gateway and the HTTP session.
"""

from __future__ import annotations

import logging

from bot.adapters.discord import alerts
from bot.adapters.discord.gateway import Gateway
from bot.adapters.discord.interactions import Interactions
from bot.core.app import Core
from bot.core.contract import AdapterRefused
from bot.core.models import Reply
from bot.settings import DiscordSettings

log = logging.getLogger("nbhelp.discord")

CONNECT_TIMEOUT_S = 30.0  # start() waits this long for the gateway's READY
STOP_GRACE_S = 6.0  # in-flight answers get this long on stop (runner allows 10 s)


class DiscordAdapter:
    """Discord slash commands for the core (see the module docstring)."""

    name = "discord"

    def __init__(self, core: Core, settings: DiscordSettings) -> None:
        self.core = core
        self.settings = settings
        self.interactions = Interactions(core, platform=self.name)
        self.gateway = Gateway(settings, self.interactions)
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
        await self.gateway.open(self.settings.token.get_secret_value())
        if not await self.gateway.wait_ready(CONNECT_TIMEOUT_S):
            await self.stop()
            raise RuntimeError("the Discord gateway connection ended at start (see the log)")

    async def stop(self) -> None:
        if self.gateway.client is None or self._stopped:
            return
        self._stopped = True
        self.interactions.stopping = self.gateway.closing = True
        await self.interactions.drain(STOP_GRACE_S)
        await self.gateway.close()
        log.info("discord adapter stopped")

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Post an alert in a channel; :class:`ChatGone` when it is gone (see :mod:`.alerts`)."""
        client = self.gateway.client
        if client is None or client.is_closed():
            raise RuntimeError("the Discord adapter is not running")
        await alerts.send_alert(client, chat_id, reply)
