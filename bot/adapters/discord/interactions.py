"""Discord interactions: slash commands, "Run code", Re-run buttons, and the 3-second rule.

Discord drops an interaction not acknowledged within 3 seconds. Commands that may take time
(anything not in :data:`FAST_COMMANDS`: status checks, /run, queue waits)
``defer(thinking=True)`` before the core sees them and follow up; the knowledge-base commands
answer directly when the reply is ready within :data:`FAST_BUDGET_S`, else they defer too.
While the adapter stops, new interactions get a short notice; those in flight are tracked
so :meth:`Interactions.drain` can let them finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import discord

from bot.adapters.discord import sending
from bot.adapters.discord.commands import RUN_COMMAND, code_option, join_args
from bot.adapters.discord.replies import plain
from bot.adapters.discord.views import RerunButton, RunModal
from bot.core.app import Core
from bot.core.errors import new_error_id
from bot.core.models import Reply
from bot.core.registry import Command
from knowledge.loader import KnowledgeBase

log = logging.getLogger("nbhelp.discord")

FAST_COMMANDS = frozenset({"help", "start", "platforms", "tips", "alternatives"})
FAST_BUDGET_S = 1.0  # a fast command not answered by then is deferred (Discord allows 3 s)
RUN_MEMORY = 1000  # re-run buttons remembered (code is not kept anywhere else)

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

        def handle() -> Coroutine[Any, Any, Reply | None]:
            return self.core.handle_text(
                f"/{command} {args}".rstrip(),
                platform=self.platform,
                chat_id=str(interaction.channel_id or user.id),
                user_id=str(user.id),
                display_name=user.display_name,
                is_admin=admin,
                is_private=interaction.guild_id is None,
                replied_text=replied_text,
                notify=lambda text: sending.progress(interaction, text),
            )

        if command in FAST_COMMANDS or refused:
            # answer directly when the reply is ready within the budget, else defer
            job = asyncio.ensure_future(handle())
            budget = max(0.05, FAST_BUDGET_S - (time.monotonic() - started))
            try:
                reply = await asyncio.wait_for(asyncio.shield(job), budget)
            except TimeoutError:
                await sending.defer(interaction)
                reply = await job
            except asyncio.CancelledError:
                job.cancel()
                raise
        else:
            await sending.defer(interaction)  # before the core sees it: checks, /run, queues
            reply = await handle()
        if reply is None:  # addressed to another bot: cannot happen for a slash command
            reply = Reply()
        view = None
        if rerun and not refused:
            key = rerun_key or self._remember(RunJob(args, replied_text))
            view = discord.ui.View(timeout=None)
            view.add_item(RerunButton(user.id, key))
        await sending.send_reply(
            interaction, reply, view=view, ephemeral=reply.ephemeral or refused
        )

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
