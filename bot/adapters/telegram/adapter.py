"""The Telegram adapter: the :mod:`bot.core.contract` face over its parts.

:mod:`.lifecycle` runs python-telegram-bot's ``Application`` (start, polling or webhook,
stop, the library's errors); :mod:`.inbound` decides which updates are for us and asks the
core; :mod:`.outbound` renders and sends replies (HTML with a plain-text fallback, photos,
albums, documents, edits, chat actions, network retries); :mod:`.ratelimit` paces every
request; :mod:`.text` holds the text helpers. This module wires them together and adds
outage alerts.
"""

from __future__ import annotations

import logging
import time

from telegram.error import ChatMigrated, TelegramError

from bot.adapters.telegram.inbound import Inbound
from bot.adapters.telegram.lifecycle import Lifecycle, build_application
from bot.adapters.telegram.outbound import Answer, Outbound, chat_id_of
from bot.adapters.telegram.ratelimit import Limits, RateLimiter
from bot.adapters.telegram.text import is_chat_gone
from bot.core.app import Core
from bot.core.contract import ChatGone, ChatMoved
from bot.core.models import Reply
from bot.settings import TelegramSettings

log = logging.getLogger("nbhelp.telegram")


class TelegramAdapter:
    """The adapter contract of :mod:`bot.core.contract` for Telegram."""

    name = "telegram"

    def __init__(
        self,
        core: Core,
        settings: TelegramSettings,
        *,
        limits: Limits | None = None,
        limiter: RateLimiter | None = None,
        poll_timeout_s: float = 10.0,
        edit_window_s: float = 120.0,
        admin_cache_s: float = 60.0,
        typing_after_s: float = 0.4,
        stop_grace_s: float = 5.0,
        concurrency: int = 32,
        network_retries: int = 2,
        updater_stop_s: float = 2.0,
    ) -> None:
        self.core = core
        self.settings = settings
        self.limiter = limiter or RateLimiter(limits)
        self.stop_grace_s = stop_grace_s
        self.app = build_application(settings, self.limiter, concurrency=concurrency)
        self.lifecycle = Lifecycle(
            self.app, settings, poll_timeout_s=poll_timeout_s, updater_stop_s=updater_stop_s
        )
        self.outbound = Outbound(
            self.app.bot, network_retries=network_retries, typing_after_s=typing_after_s
        )
        self.inbound = Inbound(
            core,
            self.app.bot,
            self.outbound,
            platform=self.name,
            username=lambda: self.lifecycle.username,
            edit_window_s=edit_window_s,
            admin_cache_s=admin_cache_s,
        )
        self.app.add_handler(self.inbound.handler())
        self._started = False
        self._stopped = False

    @property
    def username(self) -> str | None:
        """The bot's @username, known once started."""
        return self.lifecycle.username

    @property
    def conflicts(self) -> int:
        """409 Conflicts seen while polling (another process polls with this token)."""
        return self.lifecycle.conflicts

    @property
    def webhook_secret(self) -> str | None:
        """The secret Telegram must echo on webhook calls (webhook mode only)."""
        return self.lifecycle.webhook_secret

    @property
    def connected(self) -> bool:
        """Started, not stopped, and polling (or serving the webhook)."""
        return self._started and not self._stopped and self.lifecycle.fetching

    async def start(self) -> None:
        self.core.attach(self)
        await self.lifecycle.start(self.core.registry.visible())
        self._started = True
        log.info("telegram: @%s answering by %s", self.username, self.lifecycle.mode)

    async def stop(self) -> None:
        """Stop fetching, give in-flight handlers the grace period, cancel the rest, and
        shut the library down."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        started = time.monotonic()
        await self.lifecycle.stop_fetching()
        stopper = self.lifecycle.stop_dispatching()
        await self.inbound.drain(self.stop_grace_s, alongside=stopper)
        await self.outbound.aclose()
        await self.lifecycle.finish(stopper)
        log.info("telegram: stopped in %.2f s", time.monotonic() - started)

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Deliver an alert through the rate limiter; :class:`ChatGone` when the chat is gone.

        A group that became a supergroup is announced to the core (:class:`ChatMoved`) and
        the alert goes to the supergroup.
        """
        try:
            try:
                await self.outbound.deliver(chat_id_of(chat_id), reply, Answer(time.monotonic()))
            except ChatMigrated as exc:
                await self.core.publish(ChatMoved(self.name, chat_id, str(exc.new_chat_id)))
                log.warning(
                    "telegram: chat %s became supergroup %s; its subscriptions moved there",
                    chat_id,
                    exc.new_chat_id,
                )
                await self.outbound.deliver(exc.new_chat_id, reply, Answer(time.monotonic()))
        except TelegramError as exc:
            if is_chat_gone(exc):
                raise ChatGone(f"telegram chat {chat_id}: {exc.message}") from exc
            raise
