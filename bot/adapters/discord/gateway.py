"""The discord.py client's lifecycle: login, command sync, the gateway task, close.

:meth:`Gateway.open` points discord.py at ``settings.api_base`` / ``settings.gateway_url``,
logs in (REST; a rejected token is :class:`AdapterRefused`), syncs the slash commands
generated from the registry (to ``settings.guild_id`` when set, else globally) and runs
``Client.connect()`` (which reconnects and RESUMEs by itself) in a task of the shared event
loop; never ``Client.run``. :meth:`Gateway.close` cancels that task before closing, so the
gateway is closed with 1000 (session over).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.adapters.discord.commands import add_commands
from bot.adapters.discord.interactions import Interactions
from bot.adapters.discord.replies import NO_MENTIONS
from bot.adapters.discord.views import RerunButton, handlers_of
from bot.core.contract import AdapterRefused
from bot.settings import DiscordSettings

log = logging.getLogger("nbhelp.discord")
CLOSE_TIMEOUT_S = 10.0  # each step of closing the gateway connection


def point_library_at(settings: DiscordSettings) -> None:
    """discord.py reads these class attributes; a fake or proxy is just another base URL."""
    Route.BASE = settings.api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


class Tree(app_commands.CommandTree[Any]):
    """The command tree; what it cannot route or parse still gets an answer."""

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await handlers_of(interaction).on_failure(interaction, error)


class GatewayClient(discord.Client):
    """A client with only the ``guilds`` intent, no caches, mentions off; ``ready`` is set
    while the gateway session is up (READY or RESUMED)."""

    def __init__(self, handlers: Interactions, ready: asyncio.Event) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # not privileged; nothing else is needed for slash commands
        super().__init__(
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
        )
        self.handlers = handlers
        self.ready = ready
        self.tree = Tree(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RerunButton)
        names = add_commands(self.tree, self.handlers.core.registry, self.handlers)
        log.info("discord commands: %s", ", ".join(names))

    async def on_connect(self) -> None:  # dispatched on READY
        self.ready.set()

    async def on_resumed(self) -> None:
        log.info("discord gateway resumed")
        self.ready.set()

    async def on_disconnect(self) -> None:
        self.ready.clear()


class Gateway:
    """One client at a time: opened by :meth:`open`, closed by :meth:`close`."""

    def __init__(self, settings: DiscordSettings, handlers: Interactions) -> None:
        self.settings = settings
        self.handlers = handlers
        self.client: GatewayClient | None = None
        self.ready = asyncio.Event()
        self.synced: list[app_commands.AppCommand] = []
        self.closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """The gateway session is up (READY, not dropped) and the client not closed."""
        return self.client is not None and not self.client.is_closed() and self.ready.is_set()

    async def open(
        self, token: str, *, before_connect: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Log in, sync the commands, ``before_connect``, and start the gateway task."""
        point_library_at(self.settings)
        client = self.client = GatewayClient(self.handlers, self.ready)
        try:
            await client.login(token)
            await self._sync(client)
            if before_connect is not None:
                await before_connect()
        except discord.LoginFailure:
            await client.close()
            self.client = None
            raise AdapterRefused("Discord rejected the bot token (NBHELP_DISCORD__TOKEN)") from None
        except BaseException:
            await client.close()
            self.client = None
            raise
        self._task = asyncio.create_task(self._run(client), name="discord-gateway")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for READY; False when the gateway task ended first."""
        assert self._task is not None
        ready = asyncio.ensure_future(self.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self._task in done:
            return False
        if not done:
            log.warning("no Discord gateway READY after %.0f s; still trying", timeout_s)
        return True

    async def _sync(self, client: GatewayClient) -> None:
        guild_id = self.settings.guild_id
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            client.tree.copy_global_to(guild=guild)
        self.synced = await client.tree.sync(guild=guild)
        log.info(
            "synced %d Discord commands %s",
            len(self.synced),
            f"to server {guild_id} (immediate)" if guild else "globally (may take up to an hour)",
        )

    async def _run(self, client: GatewayClient) -> None:
        try:
            await client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            if not self.closing:
                log.exception("the Discord gateway stopped; Discord commands will not answer")

    async def close(self) -> None:
        """Stop reading, close the gateway and the HTTP session."""
        self.closing = True
        if self._task is not None:
            # stop reading first: discord.py then closes the gateway with 1000 (session over)
            # instead of its reconnect code 4000 from a read loop interrupted by the close
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                log.warning(
                    "discord: the gateway reader did not stop within %.0f s", CLOSE_TIMEOUT_S
                )
        if self.client is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.client.close()
            except TimeoutError:  # a peer that vanished mid-close: shutdown stays bounded
                log.warning("discord: closing the connection took over %.0f s", CLOSE_TIMEOUT_S)
        self.ready.clear()
