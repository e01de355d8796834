"""The Discord adapter: slash commands in servers and DMs through discord.py 2.x.

Lifecycle: ``start()`` points discord.py at ``settings.api_base`` /
``settings.gateway_url``, logs in (REST), syncs the slash commands generated from the
registry (to ``settings.guild_id`` when set, else globally) and runs
``Client.connect()`` (which reconnects and RESUMEs by itself) in a task of the shared event
loop; never ``Client.run``. ``stop()`` refuses new interactions, lets in-flight answers finish
for a few seconds, then closes the gateway and the HTTP session.

Acknowledgement (Discord's 3-second window): commands that may take time (anything not in
:data:`FAST_COMMANDS`: status checks, /run, queue waits) ``defer(thinking=True)`` before the
core sees them and follow up; the knowledge-base commands answer directly when the reply is
ready within :data:`FAST_BUDGET_S`, else they defer too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.adapters.discord.commands import (
    RUN_COMMAND,
    add_commands,
    code_option,
    join_args,
)
from bot.adapters.discord.replies import (
    DEFAULT_FILESIZE_LIMIT,
    NO_MENTIONS,
    Outgoing,
    build,
    plain,
)
from bot.core.app import Core
from bot.core.contract import AdapterRefused, ChatGone
from bot.core.errors import new_error_id
from bot.core.models import Reply
from bot.core.registry import Command
from bot.settings import DiscordSettings
from knowledge.loader import KnowledgeBase

log = logging.getLogger("nbhelp.discord")

FAST_COMMANDS = frozenset({"help", "start", "platforms", "tips", "alternatives"})
FAST_BUDGET_S = 1.0  # a fast command not answered by then is deferred (Discord allows 3 s)
CONNECT_TIMEOUT_S = 30.0  # start() waits this long for the gateway's READY
STOP_GRACE_S = 6.0  # in-flight answers get this long on stop (runner allows 10 s)
ALERT_ATTEMPTS = 6  # around discord.py's own 5 tries on 429 / 5xx
RUN_MEMORY = 1000  # re-run buttons remembered (code is not kept anywhere else)
MODAL_CODE_LIMIT = 4000  # Discord's text-input maximum

RERUN_TEMPLATE = r"nbhelp:rerun:(?P<user>[0-9]{1,20}):(?P<key>[0-9a-f]{1,32})"
STOPPING_TEXT = "nbhelp is restarting; please try again in a minute."
NOT_YOURS_TEXT = "Only the person who ran this code can re-run it. Use /run for your own."
EXPIRED_RUN_TEXT = "This run is too old to re-run (the bot restarted since). Use /run again."
EMPTY_MESSAGE_TEXT = "That message has no text to run. Use it on a message with code in it."


def point_library_at(settings: DiscordSettings) -> None:
    """discord.py reads these class attributes; a fake or proxy is just another base URL."""
    Route.BASE = settings.api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


@dataclass(frozen=True, slots=True)
class RunJob:
    args: str
    replied_text: str | None


class RerunButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=RERUN_TEMPLATE):
    """The "Re-run" button under a /run result: its custom_id names the author and the job,
    so it keeps working for any message (and refuses everyone but the author)."""

    def __init__(self, user_id: int, key: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Re-run",
                emoji="🔁",
                style=discord.ButtonStyle.secondary,
                custom_id=f"nbhelp:rerun:{user_id}:{key}",
            )
        )
        self.user_id = user_id
        self.key = key

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> RerunButton:
        return cls(int(match["user"]), match["key"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        adapter: DiscordAdapter = interaction.client.adapter  # type: ignore[attr-defined]
        await adapter.on_rerun(interaction, self.user_id, self.key)


class RunModal(discord.ui.Modal, title="Run code"):
    code: discord.ui.TextInput[RunModal] = discord.ui.TextInput(
        label="Python code",
        style=discord.TextStyle.paragraph,
        placeholder="import math\nprint(math.pi)",
        max_length=MODAL_CODE_LIMIT,
    )

    def __init__(self, adapter: DiscordAdapter) -> None:
        super().__init__(timeout=15 * 60)
        self.adapter = adapter

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await self.adapter.answer(
            interaction, RUN_COMMAND, self.code.value, started=time.monotonic(), rerun=True
        )

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception
    ) -> None:
        await self.adapter.on_failure(interaction, error)


class _Tree(app_commands.CommandTree[Any]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        adapter: DiscordAdapter = interaction.client.adapter  # type: ignore[attr-defined]
        await adapter.on_failure(interaction, error)


class _Client(discord.Client):
    def __init__(self, adapter: DiscordAdapter) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # not privileged; nothing else is needed for slash commands
        super().__init__(
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
        )
        self.adapter = adapter
        self.tree = _Tree(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RerunButton)
        names = add_commands(self.tree, self.adapter.core.registry, self.adapter)
        log.info("discord commands: %s", ", ".join(names))

    async def on_connect(self) -> None:
        self.adapter.connected.set()

    async def on_resumed(self) -> None:
        log.info("discord gateway resumed")
        self.adapter.connected.set()

    async def on_disconnect(self) -> None:
        self.adapter.connected.clear()


class DiscordAdapter:
    """Discord slash commands for the core (see the module docstring)."""

    name = "discord"

    def __init__(self, core: Core, settings: DiscordSettings) -> None:
        self.core = core
        self.settings = settings
        self.client: _Client | None = None
        self.connected = asyncio.Event()
        self.synced: list[app_commands.AppCommand] = []
        self._gateway: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runs: OrderedDict[str, RunJob] = OrderedDict()
        self._stopping = False
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.client is not None:
            return
        if self.settings.token is None:
            raise AdapterRefused("NBHELP_DISCORD__TOKEN is not set")
        self.core.attach(self)
        point_library_at(self.settings)
        client = self.client = _Client(self)
        try:
            await client.login(self.settings.token.get_secret_value())
            await self._sync(client)
        except discord.LoginFailure:
            await client.close()
            self.client = None
            raise AdapterRefused("Discord rejected the bot token (NBHELP_DISCORD__TOKEN)") from None
        except BaseException:
            await client.close()
            self.client = None
            raise
        self._gateway = asyncio.create_task(self._run_gateway(client), name="discord-gateway")
        ready = asyncio.ensure_future(self.connected.wait())
        done, _ = await asyncio.wait(
            {ready, self._gateway}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self._gateway in done:
            await self.stop()
            raise RuntimeError("the Discord gateway connection ended at start (see the log)")
        if not done:
            log.warning("no Discord gateway READY after %.0f s; still trying", CONNECT_TIMEOUT_S)

    async def _sync(self, client: _Client) -> None:
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

    async def _run_gateway(self, client: _Client) -> None:
        try:
            await client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            if not self._stopping:
                log.exception("the Discord gateway stopped; Discord commands will not answer")

    async def stop(self) -> None:
        if self.client is None or self._stopped:
            return
        self._stopped = self._stopping = True
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            log.info("waiting for %d Discord answers in flight", len(pending))
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        if self._gateway is not None:
            # stop reading first: discord.py then closes the gateway with 1000 (session over)
            # instead of its reconnect code 4000 from a read loop interrupted by the close
            self._gateway.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gateway
        await self.client.close()
        self.connected.clear()
        log.info("discord adapter stopped")

    # -- what the generated commands call ----------------------------------------------------

    def knowledge(self) -> KnowledgeBase:
        return self.core.ctx.knowledge

    async def on_command(
        self, interaction: discord.Interaction, command: Command, values: dict[str, Any]
    ) -> None:
        started = time.monotonic()
        if command.name == RUN_COMMAND:
            code = code_option(command)
            if code is not None and not str(values.get(code.name) or "").strip():
                if self._stopping:
                    await self._notice(interaction, STOPPING_TEXT)
                    return
                await interaction.response.send_modal(RunModal(self))
                return
        await self.answer(
            interaction,
            command.name,
            join_args(command, values),
            started=started,
            rerun=command.name == RUN_COMMAND,
        )

    async def on_run_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        started = time.monotonic()
        text = message.content or ""
        if not text.strip():
            await self._notice(interaction, EMPTY_MESSAGE_TEXT)
            return
        await self.answer(
            interaction, RUN_COMMAND, "", replied_text=text, started=started, rerun=True
        )

    async def on_rerun(self, interaction: discord.Interaction, author_id: int, key: str) -> None:
        started = time.monotonic()
        if interaction.user.id != author_id:
            await self._notice(interaction, NOT_YOURS_TEXT)
            return
        job = self._runs.get(key)
        if job is None:
            await self._notice(interaction, EXPIRED_RUN_TEXT)
            return
        self._runs.move_to_end(key)
        await self.answer(
            interaction,
            RUN_COMMAND,
            job.args,
            replied_text=job.replied_text,
            started=started,
            rerun=True,
            rerun_key=key,
        )

    async def on_failure(self, interaction: discord.Interaction, error: BaseException) -> None:
        """Anything discord.py could not route or parse still gets an answer, never silence."""
        error_id = new_error_id()
        log.error("error %s in Discord interaction %s", error_id, interaction.id, exc_info=error)
        text = f"Sorry, that did not work (error {error_id}). Try /help."
        with contextlib.suppress(discord.HTTPException):
            if not interaction.response.is_done():
                await interaction.response.send_message(**plain(text).kwargs(), ephemeral=True)
            else:
                await interaction.followup.send(**plain(text).kwargs(), ephemeral=True)

    # -- answering ---------------------------------------------------------------------------

    def _is_admin(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            return True
        perms = interaction.permissions
        return bool(perms.manage_guild or perms.administrator)

    async def answer(
        self,
        interaction: discord.Interaction,
        command: str,
        args: str,
        *,
        started: float,
        replied_text: str | None = None,
        rerun: bool = False,
        rerun_key: str | None = None,
    ) -> None:
        """Acknowledge in time, ask the core, send the reply (with a Re-run button for /run)."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            if self._stopping:
                await self._notice(interaction, STOPPING_TEXT)
                return
            await self._answer(interaction, command, args, started, replied_text, rerun, rerun_key)
        except Exception as exc:  # never leave the user with "did not respond"
            await self.on_failure(interaction, exc)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _answer(
        self,
        interaction: discord.Interaction,
        command: str,
        args: str,
        started: float,
        replied_text: str | None,
        rerun: bool,
        rerun_key: str | None,
    ) -> None:
        registered = self.core.registry.get(command)
        admin = self._is_admin(interaction)
        refused = bool(registered and registered.admin_in_groups and not admin)
        user = interaction.user

        def handle() -> Coroutine[Any, Any, Reply | None]:
            return self.core.handle_text(
                f"/{command} {args}".rstrip(),
                platform="discord",
                chat_id=str(interaction.channel_id or user.id),
                user_id=str(user.id),
                display_name=user.display_name,
                is_admin=admin,
                is_private=interaction.guild_id is None,
                replied_text=replied_text,
                notify=lambda text: self._progress(interaction, text),
            )

        if command in FAST_COMMANDS or refused:
            # answer directly when the reply is ready within the budget, else defer
            job = asyncio.ensure_future(handle())
            budget = max(0.05, FAST_BUDGET_S - (time.monotonic() - started))
            try:
                reply = await asyncio.wait_for(asyncio.shield(job), budget)
            except TimeoutError:
                await self._defer(interaction)
                reply = await job
            except asyncio.CancelledError:
                job.cancel()
                raise
        else:
            await self._defer(interaction)  # before the core sees it: status checks, /run, queues
            reply = await handle()
        if reply is None:  # addressed to another bot: cannot happen for a slash command
            reply = Reply()
        view = None
        if rerun and not refused:
            key = rerun_key or self._remember(RunJob(args, replied_text))
            view = discord.ui.View(timeout=None)
            view.add_item(RerunButton(user.id, key))
        await self._send(interaction, reply, view=view, ephemeral=reply.ephemeral or refused)

    def _remember(self, job: RunJob) -> str:
        key = secrets.token_hex(6)
        self._runs[key] = job
        while len(self._runs) > RUN_MEMORY:
            self._runs.popitem(last=False)
        return key

    async def _progress(self, interaction: discord.Interaction, text: str) -> None:
        """Show a progress line (e.g. a /run waiting in the queue) in the deferred answer."""
        try:
            await interaction.edit_original_response(
                content=text[:2000], allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException:
            log.warning("could not show progress for interaction %s", interaction.id)

    async def _defer(self, interaction: discord.Interaction) -> None:
        if interaction.response.is_done():
            return
        try:
            await interaction.response.defer(thinking=True)
        except discord.NotFound:
            log.warning("Discord interaction %s expired before it was acknowledged", interaction.id)

    async def _notice(self, interaction: discord.Interaction, text: str) -> None:
        """A short "only you can see this" answer that needs no core."""
        kwargs = plain(text).kwargs()
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(**kwargs, ephemeral=True)
            else:
                await interaction.followup.send(**kwargs, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("could not answer Discord interaction %s: %s", interaction.id, exc)

    async def _send(
        self,
        interaction: discord.Interaction,
        reply: Reply,
        *,
        view: discord.ui.View | None,
        ephemeral: bool,
    ) -> None:
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
                log.warning(
                    "Discord interaction %s expired; answering in the channel", interaction.id
                )
                await self._to_channel(interaction, outs[i:])
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
                await self._notice(
                    interaction, f"Sorry, Discord refused my reply (error {error_id})."
                )
                return

    async def _to_channel(self, interaction: discord.Interaction, outs: list[Outgoing]) -> None:
        if self.client is None or interaction.channel_id is None:
            return
        channel = self.client.get_partial_messageable(interaction.channel_id)
        try:
            for out in outs:
                await channel.send(**out.kwargs())
        except discord.HTTPException as exc:
            log.warning("could not post in channel %s either: %s", interaction.channel_id, exc)

    # -- alerts ------------------------------------------------------------------------------

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Post an alert in a channel (or DM channel) through discord.py's rate limiting.

        discord.py waits out each 429 (``retry_after``, global or per route) up to five times;
        this retries around that so a broadcast loses nothing. A deleted channel (404) or one
        that forbids the bot (403) raises :class:`ChatGone`.
        """
        if self.client is None or self.client.is_closed():
            raise RuntimeError("the Discord adapter is not running")
        try:
            channel = self.client.get_partial_messageable(int(chat_id))
        except ValueError:
            log.warning("discord chat id %r is not a channel id; dropping it", chat_id)
            raise ChatGone(chat_id) from None
        for out in build(reply, DEFAULT_FILESIZE_LIMIT):
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
                    if attempt == ALERT_ATTEMPTS - 1 or not (
                        exc.status == 429 or exc.status >= 500
                    ):
                        raise
                    retry_after = _retry_after(exc) or min(8.0, 0.5 * 2**attempt)
                    log.info(
                        "alert to discord channel %s: %s, retrying in %.2f s",
                        chat_id,
                        exc.status,
                        retry_after,
                    )
                    await asyncio.sleep(retry_after)


def _retry_after(exc: discord.HTTPException) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        value = headers.get(name)
        if value:
            with contextlib.suppress(ValueError):
                return min(60.0, float(value))
    return None
