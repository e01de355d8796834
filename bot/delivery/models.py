"""The data of delivery: a request as recorded, a reply waiting in the outbox, a chat's queue.

Platform-neutral: an adapter fills :attr:`Request.route` (and reads :attr:`Parcel.route`)
with what its platform needs to answer (Telegram: the message id and forum topic; Discord:
the interaction id and token). Nothing here imports an adapter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.core.models import Reply

Lane = Literal["quick", "alert", "run"]
#: Which replies go first in a chat: answers to quick commands, then alerts, then /run answers
#: (progress comes after all of them, see :mod:`bot.delivery.plan`).
LANES: tuple[Lane, ...] = ("quick", "alert", "run")


class Undeliverable(Exception):
    """The platform refused this reply for good (retrying cannot help); it is given up."""


@dataclass(frozen=True, slots=True)
class Request:
    """One command as an adapter took it from its platform, recorded before acknowledging."""

    platform: str  # the adapter's name
    key: str  # the platform's id of the event (dedupes a redelivery)
    chat_id: str
    user_id: str
    display_name: str
    text: str  # as typed, e.g. "/status colab"
    is_private: bool = True
    is_admin: bool = False  # known now (Discord permissions); else checked when needed
    replied_text: str | None = None
    bot_username: str | None = None
    route: dict[str, Any] = field(default_factory=dict)  # where the answer goes
    received_at: float = 0.0  # wall clock


@dataclass(frozen=True, slots=True)
class Ticket:
    """A recorded request: its row id and the lane it is handled on."""

    id: int
    request: Request
    lane: Lane
    attempts: int = 1


@dataclass(eq=False, slots=True)
class Parcel:
    """One reply on its way to a chat (a row of the outbox, or an alert held by the monitor)."""

    id: int  # outbox row id; 0 when another outbox holds it (alerts)
    adapter: str
    chat_id: str
    lane: Lane
    reply: Reply
    route: dict[str, Any] = field(default_factory=dict)
    who: str = ""  # the asker's display name (user text)
    created_at: float = 0.0  # wall clock: retries stop retry_for_s after this
    request_id: int | None = None
    attempts: int = 0
    next_at: float = 0.0  # monotonic: not before (a retry's backoff)
    retry: bool = True  # False: a failure is reported at once (alerts retry on their own)
    outcome: asyncio.Future[None] | None = None  # resolved when sent or given up


@dataclass(eq=False, slots=True)
class Batch:
    """What one send carries: one parcel, or several combined into one message."""

    parcels: list[Parcel]
    steps: set[int] = field(default_factory=set)  # parts already sent (a retry skips them)
    memo: dict[str, Any] = field(default_factory=dict)  # the adapter's own (e.g. a contact sheet)


@dataclass(frozen=True, slots=True)
class ChatBudget:
    """What the platform lets a bot send into one chat."""

    count: int | None = None  # at most this many messages ... (None: no such budget)
    period_s: float = 60.0  # ... in any this many seconds (Telegram groups: 20 a minute)
    combine: bool = False  # answers may be combined into one message


@dataclass(frozen=True, slots=True)
class Waiting:
    """A /run in a chat's queue."""

    request_id: int
    who: str
    running: bool
    since: float  # monotonic
    note: str | None = None  # the latest progress line of its handler
    route: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class QueueView:
    """A chat's /run queue as its progress message shows it (arrival order)."""

    chat_id: str
    entries: tuple[Waiting, ...] = ()

    @property
    def waiting(self) -> tuple[Waiting, ...]:
        return tuple(e for e in self.entries if not e.running)

    @property
    def running(self) -> int:
        return sum(1 for e in self.entries if e.running)

    def signature(self) -> tuple[tuple[int, bool, str | None], ...]:
        return tuple((e.request_id, e.running, e.note) for e in self.entries)

    def visible(self, now: float, after_s: float) -> bool:
        """Worth showing: a handler said something (e.g. a queue position), or several runs
        wait here and one has waited ``after_s`` (a lone run starting its kernel is not)."""
        if any(e.note for e in self.entries):
            return True
        waiting = self.waiting
        return len(waiting) > 1 and any(now - e.since >= after_s for e in waiting)
