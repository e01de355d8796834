"""The contract between the core and the chat adapters (opsdroid's connect / listen / send).

An adapter owns its platform's rules (limits, escaping, acknowledgement windows, rate limits)
and nothing else. A chat adapter records what it takes from its platform before
acknowledging it (:meth:`Core.accept` with a :class:`~bot.delivery.models.Request`), hands it
to the core (:meth:`Core.begin`; its update handler returns at once), and is the
:class:`Outlet` the core's scheduler sends every reply through (:meth:`Core.open_outlet`).
The console and ``ask`` call :meth:`Core.handle_text` and print the reply. Adapters register
with :meth:`Core.attach` so the core can deliver alerts through them. Chat events that
services care about (a group that changed its id, a chat that is gone) go to
:meth:`Core.publish`; adapters never reach into a service.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.core.models import Reply
from bot.delivery.models import Batch, ChatBudget, Parcel, QueueView, Request


class AdapterRefused(Exception):
    """The platform refused the adapter for good (e.g. the token was rejected): retrying the
    start will not help. Any other exception from :meth:`ChatAdapter.start` is retried."""


class ChatGone(Exception):
    """The chat no longer exists or forbids the bot: its subscriptions should be dropped."""


@runtime_checkable
class ChatAdapter(Protocol):
    name: str  # "telegram", "discord", "console": also the platform key of subscriptions

    @property
    def connected(self) -> bool:
        """Whether the adapter can answer now: started, its connection up, not stopped."""

    async def start(self) -> None:
        """Connect, register the commands, and begin listening in background tasks."""

    async def stop(self) -> None:
        """Stop listening, finish or cancel in-flight work, disconnect. Idempotent."""

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Deliver an outage alert to a chat, honouring the platform's rate limits.

        Raises :class:`ChatGone` when the chat was deleted or the bot was removed from it.
        """


class Outlet(Protocol):
    """The sending face of a chat adapter, driven by the core's chat scheduler
    (:mod:`bot.delivery.dispatch`)."""

    name: str

    def budget(self, chat_id: str) -> ChatBudget:
        """What the platform lets the bot send into this chat."""

    def pack(self, chat_id: str, parcels: Sequence[Parcel], limit: int) -> int:
        """How many of the first ``parcels`` (at most ``limit``) go as one combined message."""

    async def deliver(self, chat_id: str, batch: Batch) -> int:
        """Send a batch (one reply, or several combined); return the messages it cost.

        Raises :class:`ChatGone` (the chat is gone), :class:`~bot.delivery.models.Undeliverable`
        (refused for good); anything else is retried with backoff. A retry passes the same
        batch: parts listed in ``batch.steps`` were sent already."""

    async def show_progress(self, chat_id: str, view: QueueView) -> int:
        """Show (send or edit) the chat's one progress message; an empty view removes it.
        Returns the messages it cost."""

    async def is_admin(self, request: Request) -> bool:
        """Whether the asker administers the chat (asked only for admin-only commands)."""

    def working(self, request: Request) -> AbstractAsyncContextManager[None]:
        """Shown while the request is handled (e.g. "typing…")."""


@dataclass(frozen=True, slots=True)
class ChatMoved:
    """A chat changed its id (a Telegram group upgraded to a supergroup)."""

    platform: str
    old_chat_id: str
    new_chat_id: str


@dataclass(frozen=True, slots=True)
class ChatRemoved:
    """A chat was deleted or removed the bot."""

    platform: str
    chat_id: str
    reason: str


ChatEvent = ChatMoved | ChatRemoved
