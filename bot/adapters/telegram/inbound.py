"""Telegram inbound: which updates are for this bot, recorded before Telegram hears back.

python-telegram-bot's ``Updater`` hands every update to ``Application.update_queue.put`` —
in long polling before it advances the ``getUpdates`` offset (which is what confirms the
updates to Telegram), in webhook mode before the webhook answers 200. The adapter's queue is a
:class:`RecordingQueue`: its ``put`` records the update in SQLite (``Core.accept``) and hands
it to the core (``Core.begin``) first, so an update Telegram considers delivered is always in
the database, and no update handler of the library ever waits for a command's work.

Text messages (new and edited) become :class:`~bot.delivery.models.Request` objects. In
private chats everything is answered; in groups only commands: known ones bare or as
``/cmd@thisbot``, unknown ones only when addressed to this bot (a bare ``/ban`` is probably
another bot's), and ``/cmd@otherbot`` never. The admin flag comes from ``getChatMember``
(creator / administrator), fetched only for ``admin_in_groups`` commands and cached briefly.
An edit of a message answered within ``edit_window_s`` re-runs it and edits the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Bot, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

from bot.adapters.telegram.outbound import Answer, thread_of
from bot.core.app import Core
from bot.core.parse import parse
from bot.delivery.models import Request
from bot.retry import Backoff

log = logging.getLogger("nbhelp.telegram")

ALLOWED_UPDATES = ("message", "edited_message")
ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})
MAX_ANSWERS = 2000  # answered messages remembered for edits
MAX_ADMIN_CACHE = 4096


class RecordingQueue(asyncio.Queue[object]):
    """The library's update queue, recording each update before it counts as received."""

    def __init__(self, record: Callable[[object], Awaitable[None]]) -> None:
        super().__init__()
        self._record = record

    async def put(self, item: object) -> None:
        await self._record(item)
        await super().put(item)


class Inbound:
    """Turns updates into recorded requests, and remembers answers for edits."""

    def __init__(
        self,
        core: Core,
        bot: Bot,
        *,
        platform: str,
        username: Callable[[], str | None],
        edit_window_s: float,
        admin_cache_s: float,
    ) -> None:
        self.core = core
        self.bot = bot
        self.platform = platform
        self.username = username
        self.edit_window_s = edit_window_s
        self.admin_cache_s = admin_cache_s
        self.refuse_new = False
        self.recorded = 0  # updates recorded (for tests and benchmarks)
        self._answers: OrderedDict[tuple[int, int], Answer] = OrderedDict()
        self._admins: dict[tuple[int, int], tuple[float, bool]] = {}

    # -- recording ---------------------------------------------------------------------------

    async def record(self, item: object) -> None:
        """The :class:`RecordingQueue` hook: record an update that is for us, then hand it to
        the core. Waits (backing off) while the database cannot record it: nothing is
        confirmed to Telegram meanwhile, so nothing is lost."""
        if not isinstance(item, Update) or self.refuse_new:
            return
        try:
            request = self.request_of(item)
        except Exception:
            log.exception("telegram: update %s could not be read; skipped", item.update_id)
            return
        if request is None:
            return
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                tickets = await self.core.accept([request])
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next_delay()
                log.error(
                    "telegram: cannot record update %s (%s); not confirming it to Telegram, "
                    "retrying in %.1f s",
                    item.update_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        self.recorded += 1
        for ticket in tickets:
            self.core.begin(ticket)

    def request_of(self, update: Update) -> Request | None:
        """The request an update carries for this bot, or None (not for us, or an edit of a
        message that was never answered or is too old)."""
        message = update.edited_message or update.message
        if message is None or not message.text:
            return None
        edit = update.edited_message is not None
        if edit and self.answer_for(message.chat_id, message.message_id) is None:
            return None
        if not self.wants(message):
            return None
        chat = message.chat
        private = chat.type == ChatType.PRIVATE
        user = message.from_user
        anonymous_admin = message.sender_chat is not None and message.sender_chat.id == chat.id
        replied: str | None = None
        if message.quote is not None and message.quote.text:
            replied = message.quote.text
        elif message.reply_to_message is not None:
            replied = message.reply_to_message.text or message.reply_to_message.caption
        route: dict[str, Any] = {
            "message_id": message.message_id,
            "thread_id": thread_of(message),
            "group": not private,
        }
        if edit:
            route["edit"] = True
        return Request(
            platform=self.platform,
            key=f"{self.bot.id}:{update.update_id}",
            chat_id=str(chat.id),
            user_id=str(user.id if user else (message.sender_chat or chat).id),
            display_name=user.full_name if user else (chat.title or ""),
            text=message.text,
            is_private=private,
            is_admin=anonymous_admin,
            replied_text=replied,
            bot_username=self.username(),
            route=route,
            received_at=time.time(),
        )

    def wants(self, message: Message) -> bool:
        """Whether a text message is for this bot (see the module docstring)."""
        text = message.text or ""
        if message.chat.type == ChatType.PRIVATE:
            return True
        if not text.startswith("/"):
            return False
        parsed = parse(text, self.username())
        if parsed.addressed_elsewhere or not parsed.command:
            return False
        if self.core.registry.get(parsed.command) is not None:
            return True
        first = text.split(maxsplit=1)[0]
        return "@" in first  # an unknown command addressed to this bot: say so

    # -- the admin check ---------------------------------------------------------------------

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        now = time.monotonic()
        cached = self._admins.get(key)
        if cached is not None and now - cached[0] < self.admin_cache_s:
            return cached[1]
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("telegram: getChatMember %s/%s failed: %s", chat_id, user_id, exc)
            return False
        admin = member.status in ADMIN_STATUSES
        if len(self._admins) > MAX_ADMIN_CACHE:
            self._admins.clear()
        self._admins[key] = (now, admin)
        return admin

    # -- answers, for edits ------------------------------------------------------------------

    def answer_for(self, chat_id: int, message_id: int) -> Answer | None:
        """The answer sent to a message, while its edit window lasts."""
        answer = self._answers.get((chat_id, message_id))
        if answer is None or time.monotonic() - answer.at > self.edit_window_s:
            return None
        return answer

    def remember(self, chat_id: int, message_id: int, answer: Answer) -> None:
        now = time.monotonic()
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if now - oldest.at <= self.edit_window_s and len(self._answers) < MAX_ANSWERS:
                break
            self._answers.popitem(last=False)
        self._answers[(chat_id, message_id)] = answer
