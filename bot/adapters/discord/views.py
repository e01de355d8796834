"""Discord UI components: the "Re-run" button under a /run result and the code modal.

Both call back into the adapter's interaction handlers (:class:`RunHandlers`, implemented by
:class:`~bot.adapters.discord.interactions.Interactions`), reached through the client
(``interaction.client.handlers``), so a button keeps working on any message the bot ever
sent, across restarts.
"""

from __future__ import annotations

import re
import time
from typing import Any, Protocol, runtime_checkable

import discord

from bot.adapters.discord.commands import RUN_COMMAND

RERUN_TEMPLATE = r"nbhelp:rerun:(?P<user>[0-9]{1,20}):(?P<key>[0-9a-f]{1,32})"
MODAL_CODE_LIMIT = 4000  # Discord's text-input maximum


@runtime_checkable
class RunHandlers(Protocol):
    """What the button, the modal and the command tree call back."""

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
    ) -> None: ...

    async def on_rerun(
        self, interaction: discord.Interaction, author_id: int, key: str
    ) -> None: ...

    async def on_failure(self, interaction: discord.Interaction, error: BaseException) -> None: ...


def handlers_of(interaction: discord.Interaction) -> RunHandlers:
    """The handlers of the client that received ``interaction`` (its ``handlers``)."""
    handlers = getattr(interaction.client, "handlers", None)
    if not isinstance(handlers, RunHandlers):
        raise TypeError(f"{type(interaction.client).__name__} has no nbhelp handlers")
    return handlers


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

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).on_rerun(interaction, self.user_id, self.key)


class RunModal(discord.ui.Modal, title="Run code"):
    """A multi-line editor for /run without code (a slash option is one line)."""

    code: discord.ui.TextInput[RunModal] = discord.ui.TextInput(
        label="Python code",
        style=discord.TextStyle.paragraph,
        placeholder="import math\nprint(math.pi)",
        max_length=MODAL_CODE_LIMIT,
    )

    def __init__(self, handlers: RunHandlers) -> None:
        super().__init__(timeout=15 * 60)
        self.handlers = handlers

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.handlers.answer(
            interaction, RUN_COMMAND, self.code.value, started=time.monotonic(), rerun=True
        )

    async def on_error(  # type: ignore[override]  # discord.py's Modal.on_error has no item
        self, interaction: discord.Interaction, error: Exception
    ) -> None:
        await self.handlers.on_failure(interaction, error)
