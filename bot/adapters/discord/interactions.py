"""Discord interactions: slash commands, "Run code", Re-run buttons, and the 3-second rule.

Every command the core answers is first recorded (``Core.accept``: the interaction's id,
token, application id and time) and handed to the core (``Core.begin``); then it is
acknowledged. Discord drops an interaction not acknowledged within 3 seconds: commands that
may take time (anything not in :data:`FAST_COMMANDS`: status checks, /run, queue waits)
``defer(thinking=True)`` at once; the knowledge-base commands are answered directly when
their reply goes out within :data:`FAST_BUDGET_S`, else deferred too. Answers come from the
core's chat scheduler (the adapter's outlet), as the first response or follow-ups. While the
adapter stops, new interactions get a short notice; those being acknowledged are tracked so
:meth:`Interactions.drain` can let them finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import discord

from bot.adapters.discord import sending
from bot.adapters.discord.commands import RUN_COMMAND, code_option, join_args
from bot.adapters.discord.replies import plain
from bot.adapters.discord.sending import Live
from bot.adapters.discord.views import RunModal
from bot.core.app import Core
from bot.core.errors import new_error_id
from bot.core.registry import Command
from bot.delivery.models import Request
from knowledge.loader import KnowledgeBase

log = logging.getLogger("nbhelp.discord")

FAST_COMMANDS = frozenset({"help", "start", "platforms", "tips", "alternatives"})
FAST_BUDGET_S = 1.0  # a fast command not answered by then is deferred (Discord allows 3 s)
RUN_MEMORY = 1000  # re-run buttons remembered (code is not kept anywhere else)
RECORD_BUDGET_S = 1.5  # recording slower than this (a locked database): acknowledge anyway
LIVE_MEMORY = 5000  # interactions of this run awaiting their answer

STOPPING_TEXT = "nbhelp is restarting; please try again in a minute."
NOT_YOURS_TEXT = "Only the person who ran this code can re-run it. Use /run for your own."
EXPIRED_RUN_TEXT = "This run is too old to re-run (the bot restarted since). Use /run again."
EMPTY_MESSAGE_TEXT = "That message has no text to run. Use it on a message with code in it."


@dataclass(frozen=True, slots=True)
class RunJob:
    """What a Re-run button runs again."""

    args: str
    replied_text: str | None


class Interactions:
    """What the generated commands, buttons and modals call (``commands.Handlers``)."""

    def __init__(self, core: Core, *, platform: str) -> None:
        self.core = core
        self.platform = platform
        self.stopping = False  # new interactions get STOPPING_TEXT
        self.runs: OrderedDict[str, RunJob] = OrderedDict()
        self.live: OrderedDict[str, Live] = OrderedDict()  # by interaction id
        self._inflight: set[asyncio.Task[Any]] = set()

    def knowledge(self) -> KnowledgeBase:
        return self.core.ctx.knowledge

    async def drain(self, grace_s: float) -> None:
        """Let answers in flight finish for ``grace_s``; cancel the rest."""
        pending = {t for t in self._inflight if not t.done()}
        if not pending:
            return
        log.info("waiting for %d Discord answers in flight", len(pending))
        _, late = await asyncio.wait(pending, timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    # -- entry points ------------------------------------------------------------------------

    async def on_command(
        self, interaction: discord.Interaction, command: Command, values: dict[str, Any]
    ) -> None:
        started = time.monotonic()
        if command.name == RUN_COMMAND:
            code = code_option(command)
            if code is not None and not str(values.get(code.name) or "").strip():
                if self.stopping:
                    await sending.notice(interaction, STOPPING_TEXT)
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
            await sending.notice(interaction, EMPTY_MESSAGE_TEXT)
            return
        await self.answer(
            interaction, RUN_COMMAND, "", replied_text=text, started=started, rerun=True
        )

    async def on_rerun(self, interaction: discord.Interaction, author_id: int, key: str) -> None:
        started = time.monotonic()
        if interaction.user.id != author_id:
            await sending.notice(interaction, NOT_YOURS_TEXT)
            return
        job = self.runs.get(key)
        if job is None:
            await sending.notice(interaction, EXPIRED_RUN_TEXT)
            return
        self.runs.move_to_end(key)
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
            if self.stopping:
                await sending.notice(interaction, STOPPING_TEXT)
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
        admin = is_admin(interaction)
        refused = bool(registered and registered.admin_in_groups and not admin)
        user = interaction.user
        key = None
        if rerun and not refused:
            key = rerun_key or self._remember(RunJob(args, replied_text))
        request = Request(
            platform=self.platform,
            key=str(interaction.id),
            chat_id=str(interaction.channel_id or user.id),
            user_id=str(user.id),
            display_name=user.display_name,
            text=f"/{command} {args}".rstrip(),
            is_private=interaction.guild_id is None,
            is_admin=admin,
            replied_text=replied_text,
            route={
                "interaction_id": str(interaction.id),
                "token": interaction.token,
                "application_id": str(interaction.application_id),
                "received_at": time.time(),
                "channel_id": interaction.channel_id,
                "user_id": user.id,
                "ephemeral": refused,
                "rerun_key": key,
            },
            received_at=time.time(),
        )
        live = self._live(interaction)
        recording = asyncio.ensure_future(self.core.accept([request]))
        try:
            tickets = await asyncio.wait_for(asyncio.shield(recording), RECORD_BUDGET_S)
        except TimeoutError:  # a slow database must not cost the interaction its token
            await self._defer(live, ephemeral=refused)
            tickets = await recording
        if not tickets:  # recorded before: a replay of the same interaction
            return
        self.core.begin(tickets[0])
        if command in FAST_COMMANDS or refused:
            # answered directly when the reply goes out within the budget, else deferred
            budget = max(0.05, FAST_BUDGET_S - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.delivered.wait(), budget)
        await self._defer(live, ephemeral=refused)

    def _live(self, interaction: discord.Interaction) -> Live:
        live = self.live[str(interaction.id)] = Live(interaction)
        while len(self.live) > LIVE_MEMORY:
            self.live.popitem(last=False)
        return live

    async def _defer(self, live: Live, *, ephemeral: bool) -> None:
        """Acknowledge ("thinking…") unless the answer already went out."""
        async with live.lock:
            if not live.interaction.response.is_done():
                await sending.defer(live.interaction, ephemeral=ephemeral)

    def _remember(self, job: RunJob) -> str:
        key = secrets.token_hex(6)
        self.runs[key] = job
        while len(self.runs) > RUN_MEMORY:
            self.runs.popitem(last=False)
        return key


def is_admin(interaction: discord.Interaction) -> bool:
    """Whether the user may use admin commands here: anyone in a DM, else Manage Server."""
    if interaction.guild_id is None:
        return True
    perms = interaction.permissions
    return bool(perms.manage_guild or perms.administrator)
