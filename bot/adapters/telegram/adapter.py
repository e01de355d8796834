"""The Telegram adapter: python-telegram-bot's ``Application``, started inside the runner's loop.

Inbound: text messages (new and edited) become :meth:`Core.handle_text` calls. In private chats
everything is answered; in groups only commands: known ones bare or as ``/cmd@thisbot``, unknown
ones only when addressed to this bot (a bare ``/ban`` is probably another bot's), and
``/cmd@otherbot`` never. The admin flag comes from ``getChatMember`` (creator / administrator),
fetched only for ``admin_in_groups`` commands and cached briefly.

Outbound: the Telegram renderer's HTML messages (refused HTML is re-sent as plain text), images
by ``sendPhoto`` (several as an album), files by ``sendDocument``; a chat action while a
command runs. Every request goes through :class:`RateLimiter` (limits, ``retry_after``).
Edits of a recently answered message re-run it and edit the answer in place.

Lifecycle: ``initialize`` / ``start`` / ``updater.start_polling`` (or ``start_webhook``) by
hand, never ``run_polling``; :meth:`stop` stops fetching, gives in-flight handlers a grace
period, cancels the rest, and shuts the library down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    InputMediaPhoto,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    InvalidToken,
    NetworkError,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from bot.adapters.telegram.ratelimit import Limits, RateLimiter
from bot.adapters.telegram.text import (
    FILE_LIMIT,
    PHOTO_LIMIT,
    html_to_plain,
    is_chat_gone,
    is_not_modified,
    is_parse_error,
    is_too_long,
    no_mentions,
    plain_caption,
)
from bot.core.app import Core
from bot.core.contract import AdapterRefused, ChatGone, ChatMoved
from bot.core.errors import new_error_id
from bot.core.models import Attachment, Image, Rendered, Reply
from bot.core.parse import parse
from bot.core.render import TelegramRenderer
from bot.core.render.telegram import escape
from bot.settings import TelegramSettings

log = logging.getLogger("nbhelp.telegram")
T = TypeVar("T")

ALLOWED_UPDATES = ("message", "edited_message")
TG_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
ADMIN_STATUSES = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
ACTION_EVERY_S = 4.5  # a chat action shows for about 5 s
ALBUM_MAX = 10


@dataclass
class _Answer:
    """What the bot sent in answer to one message (to edit it when that message is edited)."""

    at: float
    text_ids: list[int] = field(default_factory=list)
    media_ids: list[int] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


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
        if settings.token is None or not settings.token.get_secret_value():
            raise ValueError("NBHELP_TELEGRAM__TOKEN is not set")
        self.core = core
        self.settings = settings
        self.renderer = TelegramRenderer()
        self.limiter = limiter or RateLimiter(limits)
        self.poll_timeout_s = poll_timeout_s
        self.edit_window_s = edit_window_s
        self.admin_cache_s = admin_cache_s
        self.typing_after_s = typing_after_s
        self.stop_grace_s = stop_grace_s
        self.network_retries = network_retries
        self.updater_stop_s = updater_stop_s
        self.username: str | None = None
        self.conflicts = 0  # 409s seen while polling
        self.webhook_secret: str | None = None
        self._answers: OrderedDict[tuple[int, int], _Answer] = OrderedDict()
        self._admins: dict[tuple[int, int], tuple[float, bool]] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        self._stopped = False
        self._refuse_new = False
        self.app: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(settings.token.get_secret_value())
            .base_url(settings.base_url)
            .base_file_url(settings.base_file_url)
            .rate_limiter(self.limiter)
            .concurrent_updates(concurrency)
            .job_queue(None)
            .connect_timeout(10)
            .read_timeout(15)
            .write_timeout(30)
            .media_write_timeout(60)
            .build()
        )
        self.app.add_handler(
            MessageHandler(filters.UpdateType.MESSAGES & filters.TEXT, self._on_update)
        )
        self.app.add_error_handler(self._on_library_error)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.core.attach(self)
        try:
            await self.app.initialize()  # getMe
            self.username = self.app.bot.username
            await self._set_commands()
            await self.app.start()
            updater = self.app.updater
            assert updater is not None
            if self.settings.webhook_url:
                await self._start_webhook()
            else:
                await updater.start_polling(
                    timeout=int(self.poll_timeout_s),
                    allowed_updates=ALLOWED_UPDATES,
                    bootstrap_retries=3,
                    error_callback=self._on_polling_error,
                )
        except InvalidToken:
            # the library's message quotes the token: never let it reach a log or stderr
            with contextlib.suppress(Exception):
                await self._shutdown_library()
            raise AdapterRefused(
                "Telegram rejected the bot token (NBHELP_TELEGRAM__TOKEN)"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                await self._shutdown_library()
            raise
        self._started = True
        mode = "webhook" if self.settings.webhook_url else "long polling"
        log.info("telegram: @%s answering by %s", self.username, mode)

    async def _start_webhook(self) -> None:
        s = self.settings
        url = s.webhook_url or ""
        secret = s.webhook_secret.get_secret_value() if s.webhook_secret else ""
        if not secret:
            secret = secrets.token_urlsafe(32)  # still checked: Telegram echoes what we set
            log.info("telegram: no webhook secret configured; using a random one for this run")
        self.webhook_secret = secret
        assert self.app.updater is not None
        await self.app.updater.start_webhook(
            listen=s.webhook_listen,
            port=s.webhook_port,
            url_path=urlsplit(url).path.lstrip("/"),
            webhook_url=url,
            secret_token=secret,
            allowed_updates=ALLOWED_UPDATES,
            bootstrap_retries=3,
        )

    async def _set_commands(self) -> None:
        commands = [
            BotCommand(c.name, c.description[:256])
            for c in self.core.registry.visible()
            if TG_COMMAND_NAME.match(c.name)
        ][:100]
        try:
            await self.app.bot.set_my_commands(commands)
        except TelegramError as exc:  # the menu is a convenience: never fatal
            log.warning("telegram: setMyCommands failed: %s", exc)

    async def stop(self) -> None:
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        started = time.monotonic()
        updater = self.app.updater
        if updater is not None and updater.running:
            # A long poll ends at once; a poll loop in its back-off sleep (after 409s, 429s or
            # network errors, up to 30 s) does not: cancelling the stop cancels that sleep.
            try:
                await asyncio.wait_for(updater.stop(), self.updater_stop_s)
            except TimeoutError:
                log.info("telegram: polling was backing off; cancelled it")
            except Exception:
                log.exception("telegram: stopping the updater failed")
        # The library's stop() waits for every update it fetched; give those the grace period.
        stopper = asyncio.create_task(self.app.stop()) if self.app.running else None
        waits: set[asyncio.Task[Any]] = {stopper} if stopper else set()
        waits |= self._inflight
        if waits:
            await asyncio.wait(waits, timeout=max(0.1, self.stop_grace_s))
        left = [t for t in self._inflight if not t.done()]
        if left:
            log.warning("telegram: cancelling %d unfinished handler(s) at shutdown", len(left))
            self._refuse_new = True
            for task in left:
                task.cancel()
        for task in list(self._background):
            task.cancel()
        if stopper is not None:
            try:
                await asyncio.wait_for(stopper, 3)
            except Exception:
                log.exception("telegram: Application.stop() failed")
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._shutdown_library()
        log.info("telegram: stopped in %.2f s", time.monotonic() - started)

    async def _shutdown_library(self) -> None:
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    def _on_polling_error(self, exc: TelegramError) -> None:
        if isinstance(exc, Conflict):
            self.conflicts += 1
            log.error(
                "telegram: 409 Conflict from getUpdates (seen %d time(s)): another process is "
                "polling with this bot token, or a webhook is set. Run one instance per token. "
                "Retrying with backoff. Telegram said: %s",
                self.conflicts,
                exc.message,
            )
        else:
            log.warning("telegram: getUpdates failed, retrying with backoff: %s", exc)

    async def _on_library_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error_id = new_error_id()
        log.error(
            "error %s in telegram update processing: %r",
            error_id,
            context.error,
            exc_info=context.error,
        )

    # -- inbound ---------------------------------------------------------------------------

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        task = asyncio.current_task()
        if self._refuse_new or task is None:
            return
        self._inflight.add(task)
        try:
            if update.edited_message is not None:
                await self._on_edit(update.edited_message)
            elif update.message is not None:
                await self._on_message(update.message)
        except Exception:
            error_id = new_error_id()
            log.exception("error %s handling telegram update %s", error_id, update.update_id)
        finally:
            self._inflight.discard(task)

    async def _on_message(self, message: Message) -> None:
        reply = await self._run(message)
        if reply is None:
            return
        answer = _Answer(at=time.monotonic())
        await self._deliver(message.chat_id, reply, answer, source=message)
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
            await self._edit_answer(message, reply, answer)

    def _wants(self, message: Message) -> bool:
        """Whether a text message is for this bot (see the module docstring)."""
        text = message.text or ""
        if message.chat.type == ChatType.PRIVATE:
            return True
        if not text.startswith("/"):
            return False
        parsed = parse(text, self.username)
        if parsed.addressed_elsewhere or not parsed.command:
            return False
        if self.core.registry.get(parsed.command) is not None:
            return True
        first = text.split(maxsplit=1)[0]
        return "@" in first  # an unknown command addressed to this bot: say so

    async def _run(self, message: Message) -> Reply | None:
        if not message.text or not self._wants(message):
            return None
        chat = message.chat
        private = chat.type == ChatType.PRIVATE
        user = message.from_user
        is_admin = False
        if not private:
            parsed = parse(message.text, self.username)
            command = self.core.registry.get(parsed.command)
            if command is not None and command.admin_in_groups:
                is_admin = await self._is_admin(message)
        replied: str | None = None
        if message.quote is not None and message.quote.text:
            replied = message.quote.text
        elif message.reply_to_message is not None:
            replied = message.reply_to_message.text or message.reply_to_message.caption
        async with self._chat_action(message.chat_id, _thread(message)):
            return await self.core.handle_text(
                message.text,
                platform=self.name,
                chat_id=str(chat.id),
                user_id=str(user.id if user else (message.sender_chat or chat).id),
                display_name=user.full_name if user else (chat.title or ""),
                is_admin=is_admin,
                is_private=private,
                replied_text=replied,
                bot_username=self.username,
                notify=lambda text: self._progress(message, text),
            )

    async def _progress(self, message: Message, text: str) -> None:
        """A short progress line before the answer (e.g. a /run waiting in the queue)."""
        try:
            await self._send_text(message.chat_id, escape(text), _Where.of(message))
        except TelegramError:
            log.warning("could not send a progress line to chat %s", message.chat_id)

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
            member = await self.app.bot.get_chat_member(chat_id, user.id)
        except TelegramError as exc:
            log.warning("telegram: getChatMember %s/%s failed: %s", chat_id, user.id, exc)
            return False
        admin = member.status in ADMIN_STATUSES
        if len(self._admins) > 4096:
            self._admins.clear()
        self._admins[key] = (now, admin)
        return admin

    def _remember(self, message: Message, answer: _Answer) -> None:
        now = time.monotonic()
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if now - oldest.at <= self.edit_window_s and len(self._answers) < 2000:
                break
            self._answers.popitem(last=False)
        self._answers[(message.chat_id, message.message_id)] = answer

    @contextlib.asynccontextmanager
    async def _chat_action(self, chat_id: int, thread_id: int | None) -> AsyncIterator[None]:
        """ "typing…" while the command runs, once it takes longer than ``typing_after_s``."""

        async def loop() -> None:
            await asyncio.sleep(self.typing_after_s)
            while True:
                await self._action(chat_id, ChatAction.TYPING, thread_id)
                await asyncio.sleep(ACTION_EVERY_S)

        task = self._spawn(loop())
        try:
            yield
        finally:
            task.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _action(self, chat_id: int, action: str, thread_id: int | None = None) -> None:
        try:
            await self.app.bot.send_chat_action(chat_id, action, message_thread_id=thread_id)
        except Exception as exc:  # best effort
            log.debug("telegram: chat action %s in %s failed: %s", action, chat_id, exc)

    # -- outbound --------------------------------------------------------------------------

    async def send_alert(self, chat_id: str, reply: Reply) -> None:
        """Deliver an alert through the rate limiter; :class:`ChatGone` when the chat is gone."""
        target: int | str = _chat_id(chat_id)
        try:
            try:
                await self._deliver(target, reply, _Answer(at=time.monotonic()))
            except ChatMigrated as exc:
                await self.core.publish(ChatMoved(self.name, chat_id, str(exc.new_chat_id)))
                log.warning(
                    "telegram: chat %s became supergroup %s; its subscriptions moved there",
                    chat_id,
                    exc.new_chat_id,
                )
                await self._deliver(exc.new_chat_id, reply, _Answer(at=time.monotonic()))
        except TelegramError as exc:
            if is_chat_gone(exc):
                raise ChatGone(f"telegram chat {chat_id}: {exc.message}") from exc
            raise

    async def _deliver(
        self,
        chat_id: int | str,
        reply: Reply,
        answer: _Answer,
        *,
        source: Message | None = None,
    ) -> None:
        """Send a whole reply: messages, then images, then files; ids recorded in ``answer``."""
        rendered = self.renderer.render(reply)
        where = _Where.of(source)
        for text in sendable_texts(rendered):
            sent = await self._send_text(chat_id, text, where)
            answer.text_ids.extend(m.message_id for m in sent)
        await self._send_media(chat_id, rendered.images, rendered.files, where, answer)

    async def _send_media(
        self,
        chat_id: int | str,
        images: Sequence[Image],
        files: Sequence[Attachment],
        where: _Where,
        answer: _Answer,
    ) -> None:
        photos = [i for i in images if len(i.png) <= PHOTO_LIMIT]
        as_files = [Attachment(i.png, i.filename, i.caption) for i in images if i not in photos]
        if photos:
            await self._action(chat_id, ChatAction.UPLOAD_PHOTO, where.thread_id)
        for start in range(0, len(photos), ALBUM_MAX):
            chunk = photos[start : start + ALBUM_MAX]
            sent = await self._send_photos(chat_id, chunk, where)
            answer.media_ids.extend(m.message_id for m in sent)
        files = [*as_files, *files]
        if files:
            await self._action(chat_id, ChatAction.UPLOAD_DOCUMENT, where.thread_id)
        for f in files:
            sent = await self._send_document(chat_id, f, where)
            answer.media_ids.extend(m.message_id for m in sent)

    async def _send_text(self, chat_id: int | str, text: str, where: _Where) -> list[Message]:
        kw = where.kwargs()
        try:
            m = await self._net(
                lambda: self.app.bot.send_message(
                    chat_id,
                    text,
                    parse_mode=ParseMode.HTML,
                    link_preview_options=NO_PREVIEW,
                    **kw,
                )
            )
            return [m]
        except BadRequest as exc:
            if is_parse_error(exc):
                log.warning(
                    "telegram: HTML refused in %s (%s); re-sending as plain text", chat_id, exc
                )
                plain = no_mentions(html_to_plain(text)).strip() or "(empty reply)"
                m = await self._net(
                    lambda: self.app.bot.send_message(
                        chat_id, plain, link_preview_options=NO_PREVIEW, **kw
                    )
                )
                return [m]
            if is_too_long(exc):  # cannot happen with the renderer; never lose the text
                log.warning("telegram: message too long for %s; sending it as a file", chat_id)
                data = html_to_plain(text).encode("utf-8")
                return await self._send_document(chat_id, Attachment(data, "reply.txt"), where)
            raise

    async def _send_photos(
        self, chat_id: int | str, images: Sequence[Image], where: _Where
    ) -> list[Message]:
        kw = where.kwargs()
        try:
            if len(images) == 1:
                img = images[0]
                m = await self._net(
                    lambda: self.app.bot.send_photo(
                        chat_id,
                        img.png,
                        caption=plain_caption(img.caption) or None,
                        filename=img.filename,
                        **kw,
                    )
                )
                return [m]
            media = [
                InputMediaPhoto(
                    i.png, caption=plain_caption(i.caption) or None, filename=i.filename
                )
                for i in images
            ]
            return list(
                await self._net(lambda: self.app.bot.send_media_group(chat_id, media, **kw))
            )
        except BadRequest as exc:
            if is_chat_gone(exc):
                raise
            # e.g. PHOTO_INVALID_DIMENSIONS: the picture still arrives, as a file
            log.warning("telegram: photo refused in %s (%s); sending as file(s)", chat_id, exc)
            out: list[Message] = []
            for img in images:
                out += await self._send_document(
                    chat_id, Attachment(img.png, img.filename, img.caption), where
                )
            return out

    async def _send_document(
        self, chat_id: int | str, f: Attachment, where: _Where
    ) -> list[Message]:
        kw = where.kwargs()
        if len(f.data) > FILE_LIMIT:
            size = len(f.data) / 1024 / 1024
            note = f"{f.filename} is {size:.0f} MB, over Telegram's 50 MB limit for bots."
            return await self._send_text(chat_id, note, where)
        m = await self._net(
            lambda: self.app.bot.send_document(
                chat_id,
                f.data,
                filename=f.filename,
                caption=plain_caption(f.description) or None,
                **kw,
            )
        )
        return [m]

    async def _net(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry network failures (not refusals) a few times; 429s are the limiter's job."""
        for attempt in range(self.network_retries + 1):
            try:
                return await call()
            except BadRequest:
                raise
            except NetworkError as exc:
                if attempt == self.network_retries:
                    raise
                log.info("telegram: network error (%s), retrying", exc)
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _edit_answer(self, message: Message, reply: Reply, answer: _Answer) -> None:
        """Edit the earlier answer in place: texts edited, extra ones deleted or sent."""
        chat_id = message.chat_id
        rendered = self.renderer.render(reply)
        texts = sendable_texts(rendered)
        where = _Where.of(message)
        old_texts, old_media = answer.text_ids, answer.media_ids
        new_texts: list[int] = []
        for i, text in enumerate(texts):
            if i < len(old_texts) and await self._edit_text(chat_id, old_texts[i], text):
                new_texts.append(old_texts[i])
                continue
            new_texts.extend(m.message_id for m in await self._send_text(chat_id, text, where))
        for stale in [*old_texts[len(texts) :], *old_media]:
            with contextlib.suppress(TelegramError):
                await self.app.bot.delete_message(chat_id, stale)
        answer.text_ids, answer.media_ids = new_texts, []
        await self._send_media(chat_id, rendered.images, rendered.files, where, answer)

    async def _edit_text(self, chat_id: int, message_id: int, text: str) -> bool:
        """Edit one message; False when it cannot be edited (deleted, too old)."""

        async def edit(body: str, parse_mode: str | None) -> None:
            await self._net(
                lambda: self.app.bot.edit_message_text(
                    body,
                    chat_id=chat_id,
                    message_id=message_id,
                    parse_mode=parse_mode,
                    link_preview_options=NO_PREVIEW,
                )
            )

        try:
            await edit(text, ParseMode.HTML)
        except BadRequest as exc:
            if is_not_modified(exc):
                return True
            if not is_parse_error(exc):
                log.info("telegram: cannot edit %s/%s (%s); sending anew", chat_id, message_id, exc)
                return False
            try:
                await edit(no_mentions(html_to_plain(text)).strip() or "(empty reply)", None)
            except BadRequest as exc2:
                return is_not_modified(exc2)
        return True


@dataclass(frozen=True, slots=True)
class _Where:
    """Where an answer goes: the forum topic, and in groups a reply to the command."""

    reply_to: int | None = None
    thread_id: int | None = None

    @classmethod
    def of(cls, message: Message | None) -> _Where:
        if message is None:
            return cls()
        group = message.chat.type != ChatType.PRIVATE
        return cls(message.message_id if group else None, _thread(message))

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.reply_to is not None:
            kw["reply_parameters"] = ReplyParameters(
                self.reply_to, allow_sending_without_reply=True
            )
        if self.thread_id is not None:
            kw["message_thread_id"] = self.thread_id
        return kw


def sendable_texts(rendered: Rendered) -> list[str]:
    """The rendered messages Telegram will take: one whose visible text is blank (an empty
    code block, say) is refused with "message text is empty", so it is left out."""
    texts = [t for t in rendered.messages if html_to_plain(t, show_links=False).strip()]
    if not texts and not rendered.images and not rendered.files:
        texts = ["<i>(empty reply)</i>"]
    return texts


def _thread(message: Message) -> int | None:
    return message.message_thread_id if message.is_topic_message else None


def _chat_id(chat_id: str | int) -> int | str:
    try:
        return int(chat_id)
    except (TypeError, ValueError):
        return str(chat_id)  # "@channelname"
