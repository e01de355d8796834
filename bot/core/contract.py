"""The contract between the core and the chat adapters (opsdroid's connect / listen / send).

An adapter owns its platform's rules (limits, escaping, acknowledgement windows, rate limits)
and nothing else: it turns platform events into :meth:`Core.handle_text` calls, sends the
rendered :class:`Reply`, and registers itself with :meth:`Core.attach` so the core can deliver
alerts through it. Chat events that services care about (a group that changed its id, a chat
that is gone) go to :meth:`Core.publish`; adapters never reach into a service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.core.models import Reply


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
