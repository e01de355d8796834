"""Telegram inbound: which updates are for this bot, and what the core makes of them.

Text messages (new and edited) become :meth:`Core.handle_text` calls. In private chats
everything is answered; in groups only commands: known ones bare or as ``/cmd@thisbot``,
unknown ones only when addressed to this bot (a bare ``/ban`` is probably another bot's), and
``/cmd@otherbot`` never. The admin flag comes from ``getChatMember`` (creator /
administrator), fetched only for ``admin_in_groups`` commands and cached briefly. An edit of a
message answered within ``edit_window_s`` re-runs it and edits the answer in place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from telegram import Bot, Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes, MessageHandler, filters

from bot.adapters.telegram.outbound import Answer, Outbound, thread_of
from bot.core.app import Core
from bot.core.errors import new_error_id
from bot.core.models import Reply
from bot.core.parse import parse

log = logging.getLogger("nbhelp.telegram")

ALLOWED_UPDATES = ("message", "edited_message")
ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})
MAX_ANSWERS = 2000  # answered messages remembered for edits
MAX_ADMIN_CACHE = 4096


class Inbound:
    """Turns the updates python-telegram-bot dispatches into core calls and answers."""

    def __init__(
        self,
        core: Core,
        bot: Bot,
        outbound: Outbound,
        *,
        platform: str,
        username: Callable[[], str | None],
        edit_window_s: float,
        admin_cache_s: float,
    ) -> None:
        self.core = core
        self.bot = bot
        self.outbound = outbound
        self.platform = platform
        self.username = username
        self.edit_window_s = edit_window_s
        self.admin_cache_s = admin_cache_s
        self.refuse_new = False
        self.inflight: set[asyncio.Task[Any]] = set()
        self._answers: OrderedDict[tuple[int, int], Answer] = OrderedDict()
        self._admins: dict[tuple[int, int], tuple[float, bool]] = {}

    def handler(self) -> MessageHandler[Any, None]:
        """The library handler for every text message, new or edited."""
        return MessageHandler(filters.UpdateType.MESSAGES & filters.TEXT, self.on_update)

    async def drain(self, grace_s: float, *, alongside: asyncio.Task[Any] | None = None) -> None:
        """Give in-flight handlers ``grace_s`` (while ``alongside`` runs), then cancel the rest
        and refuse any update dispatched after that."""
        waits: set[asyncio.Task[Any]] = {alongside} if alongside else set()
        waits |= self.inflight
        if waits:
            await asyncio.wait(waits, timeout=max(0.1, grace_s))
        left = [t for t in self.inflight if not t.done()]
        if left:
            log.warning("telegram: cancelling %d unfinished handler(s) at shutdown", len(left))
            self.refuse_new = True
            for task in left:
                task.cancel()

    async def on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        task = asyncio.current_task()
        if self.refuse_new or task is None:
            return
        self.inflight.add(task)
        try:
            if update.edited_message is not None:
                await self._on_edit(update.edited_message)
            elif update.message is not None:
                await self._on_message(update.message)
        except Exception:
            error_id = new_error_id()
            log.exception("error %s handling telegram update %s", error_id, update.update_id)
        finally:
            self.inflight.discard(task)

    async def _on_message(self, message: Message) -> None:
        reply = await self._run(message)
        if reply is None:
            return
        answer = Answer(at=time.monotonic())
        await self.outbound.deliver(message.chat_id, reply, answer, source=message)
        self._remember(message, answer)

    async def _on_edit(self, message: Message) -> None:
        key = (message.chat_id, message.message_id)
        answer = self._answers.get(key)
        if answer is None or time.monotonic() - answer.at > self.edit_window_s:
            return  # never answered, or too old to re-run
        async with answer.lock:
            reply = await self._run(message)
            if reply is None:
                return
            await self.outbound.edit_answer(message, reply, answer)

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

    async def _run(self, message: Message) -> Reply | None:
        if not message.text or not self.wants(message):
            return None
        chat = message.chat
        private = chat.type == ChatType.PRIVATE
        user = message.from_user
        is_admin = False
        if not private:
            parsed = parse(message.text, self.username())
            command = self.core.registry.get(parsed.command)
            if command is not None and command.admin_in_groups:
                is_admin = await self._is_admin(message)
        replied: str | None = None
        if message.quote is not None and message.quote.text:
            replied = message.quote.text
        elif message.reply_to_message is not None:
            replied = message.reply_to_message.text or message.reply_to_message.caption
        async with self.outbound.chat_action(message.chat_id, thread_of(message)):
            return await self.core.handle_text(
                message.text,
                platform=self.platform,
                chat_id=str(chat.id),
                user_id=str(user.id if user else (message.sender_chat or chat).id),
                display_name=user.full_name if user else (chat.title or ""),
                is_admin=is_admin,
                is_private=private,
                replied_text=replied,
                bot_username=self.username(),
                notify=lambda text: self.outbound.progress(message, text),
            )

    async def _is_admin(self, message: Message) -> bool:
        chat_id = message.chat_id
        if message.sender_chat is not None and message.sender_chat.id == chat_id:
            return True  # an anonymous admin posting as the group
        user = message.from_user
        if user is None:
            return False
        key = (chat_id, user.id)
        now = time.monotonic()
        cached = self._admins.get(key)
        if cached is not None and now - cached[0] < self.admin_cache_s:
            return cached[1]
        try:
            member = await self.bot.get_chat_member(chat_id, user.id)
        except TelegramError as exc:
            log.warning("telegram: getChatMember %s/%s failed: %s", chat_id, user.id, exc)
            return False
        admin = member.status in ADMIN_STATUSES
        if len(self._admins) > MAX_ADMIN_CACHE:
            self._admins.clear()
        self._admins[key] = (now, admin)
        return admin

    def _remember(self, message: Message, answer: Answer) -> None:
        now = time.monotonic()
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if now - oldest.at <= self.edit_window_s and len(self._answers) < MAX_ANSWERS:
                break
            self._answers.popitem(last=False)
        self._answers[(message.chat_id, message.message_id)] = answer
