"""The Telegram adapter: the :mod:`bot.core.contract` face over its parts.

:mod:`.lifecycle` runs python-telegram-bot's ``Application`` (start, polling or webhook,
stop, the library's errors); :mod:`.inbound` records the updates that are for us before
Telegram hears they arrived, and hands them to the core; :mod:`.outbound` renders and sends
(HTML with a plain-text fallback, photos, albums, contact sheets, documents, edits, chat
actions, network retries); :mod:`.ratelimit` paces every request; :mod:`.text` holds the text
helpers. This module is the core's :class:`~bot.core.contract.Outlet` for Telegram: the
core's chat scheduler decides what goes out when, this sends it — one reply, several answers
combined (groups only), an alert, or the chat's one progress message.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.error import BadRequest, ChatMigrated, TelegramError

from bot.adapters.telegram.inbound import Inbound, RecordingQueue
from bot.adapters.telegram.lifecycle import Lifecycle, build_application
from bot.adapters.telegram.outbound import Answer, Outbound, Where, chat_id_of
from bot.adapters.telegram.ratelimit import Limits, RateLimiter, is_group
from bot.adapters.telegram.text import is_chat_gone
from bot.core.app import Core
from bot.core.contract import ChatGone, ChatMoved
from bot.core.models import Reply
from bot.delivery.combine import Part
from bot.delivery.models import Batch, ChatBudget, Parcel, QueueView, Request, Undeliverable
from bot.settings import TelegramSettings

log = logging.getLogger("nbhelp.telegram")
NAMES_SHOWN = 3  # names in a group's progress line
NAME_CHARS = 32


def progress_text(view: QueueView, *, group: bool) -> str:
    """The chat's progress line: a group sees its queue, a private chat the latest note."""
    waiting, running = view.waiting, view.running
    if not group:
        note = next((e.note for e in reversed(view.entries) if e.note), None)
        return note or ("⏳ Your code is running…" if running else "⏳ Your code is queued…")
    parts = []
    if waiting:
        parts.append(f"⏳ {len(waiting)} run{'' if len(waiting) == 1 else 's'} queued")
    if running:
        parts.append(f"{running} running")
    if waiting:
        names = [(w.who.strip() or "someone")[:NAME_CHARS] for w in waiting[:NAMES_SHOWN]]
        more = " …" if len(waiting) > NAMES_SHOWN else ""
        parts.append("next: " + ", ".join(names) + more)
    return " · ".join(parts) or "⏳ working…"


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
        self.queue = RecordingQueue(self._record)
        self.app = build_application(
            settings, self.limiter, concurrency=concurrency, update_queue=self.queue
        )
        self.lifecycle = Lifecycle(
            self.app, settings, poll_timeout_s=poll_timeout_s, updater_stop_s=updater_stop_s
        )
        self.outbound = Outbound(
            self.app.bot, network_retries=network_retries, typing_after_s=typing_after_s
        )
        self.inbound = Inbound(
            core,
            self.app.bot,
            platform=self.name,
            username=lambda: self.lifecycle.username,
            edit_window_s=edit_window_s,
            admin_cache_s=admin_cache_s,
        )
        self._progress: dict[str, int] = {}  # chat → its progress message
        self._typers: dict[tuple[int, int | None], _Typer] = {}
        self._open = False
        self._started = False
        self._stopped = False

    async def _record(self, item: object) -> None:
        await self.inbound.record(item)

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

    def web_routes(self) -> list[web.RouteDef]:
        """In webhook mode, the route the web server serves for Telegram's posts."""
        if not self.settings.webhook_url:
            return []
        path = urlsplit(self.settings.webhook_url).path or "/"
        return [web.post(path, self._on_webhook)]

    async def _on_webhook(self, request: web.Request) -> web.Response:
        """One update from Telegram: answered 200 only once it is recorded (``RecordingQueue``),
        403 without the secret, 503 while not started (Telegram retries)."""
        secret = self.lifecycle.secret_for_webhook()
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return web.Response(status=403)
        if not self._started or self._stopped:
            return web.Response(status=503)
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("not an object")
            update = Update.de_json(data, self.lifecycle.app.bot)
        except Exception:
            log.warning("telegram: an unreadable webhook post was refused")
            return web.Response(status=400)
        await self.queue.put(update)  # recorded in SQLite before Telegram hears "200"
        return web.Response(status=200)

    @property
    def connected(self) -> bool:
        """Started, not stopped, and polling (or serving the webhook)."""
        return self._started and not self._stopped and self.lifecycle.fetching

    async def start(self) -> None:
        self.core.attach(self)
        try:
            await self.lifecycle.start(
                self.core.registry.visible(), before_fetching=self._open_outlet
            )
        except BaseException:
            if self._open:
                self._open = False
                await self.core.close_outlet(self.name, 0.0)
            raise
        self._started = True
        log.info("telegram: @%s answering by %s", self.username, self.lifecycle.mode)

    async def _open_outlet(self) -> None:
        await self.core.open_outlet(self)
        self._open = True

    async def stop(self) -> None:
        """Stop fetching, give requests in flight the grace period to be answered (the rest
        wait in the database for the next start), and shut the library down."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        started = time.monotonic()
        await self.lifecycle.stop_fetching()
        self.inbound.refuse_new = True
        stopper = self.lifecycle.stop_dispatching()
        await self.core.close_outlet(self.name, self.stop_grace_s)
        self._open = False
        await self.outbound.aclose()
        await self.lifecycle.finish(stopper)
        log.info("telegram: stopped in %.2f s", time.monotonic() - started)

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Deliver an alert in its turn in the chat (the alert lane of the chat scheduler);
        :class:`ChatGone` when the chat is gone. A group that became a supergroup is announced
        to the core (:class:`ChatMoved`) and the alert goes to the supergroup."""
        dispatcher = self.core.outlet(self.name) if self._open else None
        if dispatcher is not None:
            await dispatcher.offer(chat_id, reply)
            return
        await self.deliver(chat_id, Batch([Parcel(0, self.name, chat_id, "alert", reply)]))

    # -- the outlet --------------------------------------------------------------------------

    def budget(self, chat_id: str) -> ChatBudget:
        """Groups: their per-minute budget, and answers may be combined."""
        if is_group(chat_id):
            limits = self.limiter.limits
            return ChatBudget(limits.group_count, limits.group_period, combine=True)
        return ChatBudget()

    def pack(self, chat_id: str, parcels: Sequence[Parcel], limit: int) -> int:
        """Answers of one lane and forum topic, while their text fits one message."""
        first = parcels[0]
        if limit <= 1 or first.lane == "alert" or first.route.get("edit"):
            return 1
        thread = first.route.get("thread_id")
        parts = [Part(first.who, first.reply)]
        for p in parcels[1:limit]:
            if p.lane != first.lane or p.route.get("edit") or p.route.get("thread_id") != thread:
                break
            candidate = [*parts, Part(p.who, p.reply)]
            if not self.outbound.fits_one_message(candidate):
                break
            parts = candidate
        return len(parts)

    async def deliver(self, chat_id: str, batch: Batch) -> int:
        target = chat_id_of(chat_id)
        try:
            try:
                return await self._deliver(target, batch)
            except ChatMigrated as exc:
                await self.core.publish(ChatMoved(self.name, chat_id, str(exc.new_chat_id)))
                log.warning(
                    "telegram: chat %s became supergroup %s; its subscriptions moved there",
                    chat_id,
                    exc.new_chat_id,
                )
                return await self._deliver(exc.new_chat_id, batch)
        except TelegramError as exc:
            if is_chat_gone(exc):
                raise ChatGone(f"telegram chat {chat_id}: {exc.message}") from exc
            if isinstance(exc, BadRequest):  # a refusal: sending it again cannot help
                raise Undeliverable(exc.message) from exc
            raise  # network trouble, 5xx, a long retry_after: the scheduler retries

    async def _deliver(self, chat: int | str, batch: Batch) -> int:
        first = batch.parcels[0]
        route = first.route
        message_id = route.get("message_id")
        where = Where.to(message_id, route.get("thread_id"), group=bool(route.get("group")))
        if len(batch.parcels) > 1:
            parts = [Part(p.who, p.reply) for p in batch.parcels]
            return await self.outbound.deliver_combined(
                chat, parts, where, steps=batch.steps, memo=batch.memo
            )
        if route.get("edit") and isinstance(chat, int) and message_id is not None:
            answer = self.inbound.answer_for(chat, int(message_id))
            if answer is not None:
                async with answer.lock:
                    return await self.outbound.edit_answer(chat, first.reply, answer, where)
        answer = Answer(time.monotonic())
        cost = await self.outbound.deliver(
            chat, first.reply, answer, where=where, steps=batch.steps
        )
        if first.lane != "alert" and isinstance(chat, int) and message_id is not None:
            self.inbound.remember(chat, int(message_id), answer)
        return cost

    async def show_progress(self, chat_id: str, view: QueueView) -> int:
        """One message per chat, edited as its /run queue changes; removed when it empties."""
        target = chat_id_of(chat_id)
        shown = self._progress.get(chat_id)
        if not view.entries:
            if shown is not None:
                del self._progress[chat_id]
                await self.outbound.remove(target, shown)
            return 0
        text = progress_text(view, group=is_group(chat_id))
        where = Where(None, view.entries[0].route.get("thread_id"))
        message_id, cost = await self.outbound.show_line(target, text, shown, where)
        if message_id is not None:
            self._progress[chat_id] = message_id
        return cost

    async def is_admin(self, request: Request) -> bool:
        if request.is_admin or request.is_private:
            return True
        try:
            return await self.inbound.is_admin(int(request.chat_id), int(request.user_id))
        except ValueError:
            return False

    def working(self, request: Request) -> AbstractAsyncContextManager[None]:
        """ "typing…" while requests of a chat are handled (after ``typing_after_s``): one
        loop per chat and topic however many requests it has in flight."""
        target = chat_id_of(request.chat_id)
        if not isinstance(target, int):
            return _nothing()
        return self._typing(target, request.route.get("thread_id"))

    @contextlib.asynccontextmanager
    async def _typing(self, chat: int, thread: int | None) -> AsyncIterator[None]:
        key = (chat, thread)
        entry = self._typers.get(key)
        if entry is None:
            action = self.outbound.chat_action(chat, thread)
            await action.__aenter__()
            entry = self._typers[key] = _Typer(action)
        entry.users += 1
        try:
            yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._typers.get(key) is entry:
                del self._typers[key]
                await entry.action.__aexit__(None, None, None)


class _Typer:
    """One chat's "typing…" loop and the requests it shows for."""

    def __init__(self, action: AbstractAsyncContextManager[None]) -> None:
        self.action = action
        self.users = 0


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
