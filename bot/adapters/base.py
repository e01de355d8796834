"""The contract every chat adapter meets (opsdroid's connect / listen / send, made async).

An adapter owns its platform's rules (limits, escaping, acknowledgement windows, rate limits)
and nothing else: it turns platform events into :meth:`Core.handle_text` calls and sends the
rendered :class:`Reply`. The runner starts every configured adapter in one event loop.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bot.core.models import Reply


class ChatGone(Exception):
    """The chat no longer exists or forbids the bot: its subscriptions should be dropped."""


@runtime_checkable
class Adapter(Protocol):
    name: str  # "telegram", "discord", "console": also the platform key of subscriptions

    async def start(self) -> None:
        """Connect, register the commands, and begin listening in background tasks."""

    async def stop(self) -> None:
        """Stop listening, finish or cancel in-flight work, disconnect. Idempotent."""

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Deliver an outage alert to a chat, honouring the platform's rate limits.

        Raises :class:`ChatGone` when the chat was deleted or the bot was removed from it.
        """
