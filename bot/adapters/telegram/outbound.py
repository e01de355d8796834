"""Telegram outbound: a :class:`Reply` rendered and sent, or an earlier answer edited.

Texts go as the Telegram renderer's HTML (refused HTML is re-sent as plain text, a text too
long is sent as a file), images by ``sendPhoto`` (several as an album; a refused photo is sent
as a file), files by ``sendDocument``; a chat action ("typing…", "sending a photo…") while a
command runs or media upload. Network failures are retried with :class:`bot.retry.Backoff`,
refusals never; 429s are the rate limiter's job (:mod:`.ratelimit`). Each message of a reply
is one numbered step: a send retried by the chat scheduler skips the steps already done.

Several people's answers combined into one message (:meth:`Outbound.deliver_combined`):
one text with each part headed by its asker's name, replying to the first asker's message;
their plots on one numbered contact sheet whose caption names each tile; files as documents
captioned with their owner's name (see :mod:`bot.delivery.combine` for why a sheet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from telegram import Bot, InputMediaPhoto, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, TelegramError

from bot.adapters.telegram.text import (
    CAPTION_LIMIT,
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
from bot.core.models import Attachment, Image, Rendered, Reply
from bot.core.render import TelegramRenderer, units
from bot.core.render.telegram import escape
from bot.delivery.combine import (
    MAX_TILES,
    Part,
    Tile,
    combined_text,
    contact_sheet,
    legend,
    tiles_of,
)
from bot.retry import Backoff

log = logging.getLogger("nbhelp.telegram")
T = TypeVar("T")

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
ACTION_EVERY_S = 4.5  # a chat action shows for about 5 s
ALBUM_MAX = 10
SHEET_TILES = MAX_TILES  # plots on one contact sheet of a combined answer
NET_RETRY_INITIAL_S = 0.5  # first wait after a network error, doubled for each further one
NET_RETRY_MAX_S = 4.0


@dataclass
class Answer:
    """What the bot sent in answer to one message (to edit it when that message is edited)."""

    at: float
    text_ids: list[int] = field(default_factory=list)
    media_ids: list[int] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class Where:
    """Where an answer goes: the forum topic, and in groups a reply to the command."""

    reply_to: int | None = None
    thread_id: int | None = None

    @classmethod
    def to(cls, message_id: int | None, thread_id: int | None, *, group: bool) -> Where:
        """Where an answer to a recorded message goes (a reply to it in groups)."""
        return cls(message_id if group else None, thread_id)

    @classmethod
    def of(cls, message: Message | None) -> Where:
        if message is None:
            return cls()
        group = message.chat.type != ChatType.PRIVATE
        return cls(message.message_id if group else None, thread_of(message))

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.reply_to is not None:
            kw["reply_parameters"] = ReplyParameters(
                self.reply_to, allow_sending_without_reply=True
            )
        if self.thread_id is not None:
            kw["message_thread_id"] = self.thread_id
        return kw


class _Steps:
    """Numbers the messages of one send; skips those a failed earlier try already sent."""

    def __init__(self, done: set[int] | None) -> None:
        self.done = done if done is not None else set()
        self.index = 0
        self.cost = 0

    async def step(
        self, send: Callable[[], Awaitable[list[Message]]], cost: int = 1
    ) -> list[Message]:
        index, self.index = self.index, self.index + 1
        if index in self.done:
            return []
        sent = await send()
        self.done.add(index)
        self.cost += cost
        return sent


def one_captioned_photo(rendered: Rendered) -> str | None:
    """A reply of one short text and one photo-sized image, no files: the text, to send as the
    photo's caption; otherwise None."""
    texts = sendable_texts(rendered)
    if len(texts) != 1 or len(rendered.images) != 1 or rendered.files:
        return None
    image = rendered.images[0]
    if len(image.png) > PHOTO_LIMIT:
        return None
    caption = texts[0]
    if image.caption.strip():
        caption += "\n\n<i>" + escape(image.caption) + "</i>"
    return caption if units(html_to_plain(caption)) <= CAPTION_LIMIT else None


def captioned(rendered: Rendered, parts: Sequence[Part], tiles: Sequence[Tile]) -> str | None:
    """A combined answer whose text fits a photo's caption and whose plots fit one sheet (no
    files): that text, with the sheet's legend, as one HTML caption; otherwise None."""
    texts = sendable_texts(rendered)
    if not tiles or len(tiles) > SHEET_TILES or len(texts) != 1 or rendered.files:
        return None
    if any(part.reply.files for part in parts) or any(len(i.png) > PHOTO_LIMIT for i in tiles):
        return None
    caption = texts[0]
    if len(tiles) > 1:
        caption += "\n\n<i>" + escape("Plots: " + legend(tiles)) + "</i>"
    return caption if units(html_to_plain(caption)) <= CAPTION_LIMIT else None


def sendable_texts(rendered: Rendered) -> list[str]:
    """The rendered messages Telegram will take: one whose visible text is blank (an empty
    code block, say) is refused with "message text is empty", so it is left out."""
    texts = [t for t in rendered.messages if html_to_plain(t, show_links=False).strip()]
    if not texts and not rendered.images and not rendered.files:
        texts = ["<i>(empty reply)</i>"]
    return texts


def thread_of(message: Message) -> int | None:
    """The forum topic a message was posted in, if any."""
    return message.message_thread_id if message.is_topic_message else None


def chat_id_of(chat_id: str | int) -> int | str:
    """A stored chat id as Telegram takes it: a number, or ``"@channelname"``."""
    try:
        return int(chat_id)
    except (TypeError, ValueError):
        return str(chat_id)


class Outbound:
    """Sends and edits replies through one ``Bot`` (whose requests pass the rate limiter)."""

    def __init__(self, bot: Bot, *, network_retries: int, typing_after_s: float) -> None:
        self.bot = bot
        self.renderer = TelegramRenderer()
        self.network_retries = network_retries
        self.typing_after_s = typing_after_s
        self._background: set[asyncio.Task[Any]] = set()

    async def deliver(
        self,
        chat_id: int | str,
        reply: Reply,
        answer: Answer,
        *,
        source: Message | None = None,
        where: Where | None = None,
        steps: set[int] | None = None,
    ) -> int:
        """Send a whole reply: messages, then images, then files; ids recorded in ``answer``.
        Steps in ``steps`` were sent before and are skipped; the messages sent are counted."""
        rendered = self.renderer.render(reply)
        where = where if where is not None else Where.of(source)
        run = _Steps(steps)
        caption = one_captioned_photo(rendered) if where.reply_to is not None else None
        if caption is not None:  # in a group, a plot and its short output: one message
            image = rendered.images[0]
            sent = await run.step(partial(self._send_captioned, chat_id, image, caption, where))
            answer.media_ids.extend(m.message_id for m in sent)
            return run.cost
        for text in sendable_texts(rendered):
            sent = await run.step(partial(self.send_text, chat_id, text, where))
            answer.text_ids.extend(m.message_id for m in sent)
        await self._send_media(chat_id, rendered.images, rendered.files, where, answer, run)
        return run.cost

    def fits_one_message(self, parts: Sequence[Part]) -> bool:
        """Whether these answers combined make one text message."""
        rendered = self.renderer.render(combined_text(parts))
        return len(sendable_texts(rendered)) == 1 and "reply.txt" not in {
            f.filename for f in rendered.files
        }

    async def deliver_combined(
        self,
        chat_id: int | str,
        parts: Sequence[Part],
        where: Where,
        *,
        steps: set[int] | None = None,
        memo: dict[str, Any] | None = None,
    ) -> int:
        """Several people's answers as one message, one contact sheet and their files."""
        run = _Steps(steps)
        memo = memo if memo is not None else {}
        rendered = self.renderer.render(combined_text(parts))
        tiles = tiles_of(parts)
        caption = captioned(rendered, parts, tiles)
        if caption is not None:  # the texts on the plot(s): one message of the group's budget
            if "sheet0" not in memo:
                memo["sheet0"] = (
                    tiles[0].png
                    if len(tiles) == 1
                    else await asyncio.to_thread(contact_sheet, tiles)
                )
            name = "plot.png" if len(tiles) == 1 else "plots.png"
            photo = Image(memo["sheet0"], name, "")
            await run.step(partial(self._send_captioned, chat_id, photo, caption, where))
            return run.cost
        for text in sendable_texts(rendered):
            await run.step(partial(self.send_text, chat_id, text, where))
        for f in rendered.files:  # the text was too long after all: it arrives as a file
            await run.step(partial(self._send_document, chat_id, f, where))
        if len(tiles) == 1:
            image = Image(tiles[0].png, "plot.png", tiles[0].who)
            await run.step(partial(self._send_photos, chat_id, [image], where))
        for start in range(0, len(tiles) if len(tiles) > 1 else 0, SHEET_TILES):
            chunk = tiles[start : start + SHEET_TILES]
            key = f"sheet{start}"
            if key not in memo:  # drawn once, even when its send is retried
                memo[key] = await asyncio.to_thread(contact_sheet, chunk)
            image = Image(memo[key], "plots.png", legend(chunk))
            await run.step(partial(self._send_photos, chat_id, [image], where))
        for part in parts:
            for f in part.reply.files:
                named = Attachment(f.data, f.filename, f"for {part.who}: {f.description}".strip())
                await run.step(partial(self._send_document, chat_id, named, where))
        return run.cost

    async def edit_answer(self, chat_id: int, reply: Reply, answer: Answer, where: Where) -> int:
        """Edit the earlier answer in place: texts edited, extra ones deleted or sent.
        Returns the messages it cost (edits count: the limiter books them too)."""
        rendered = self.renderer.render(reply)
        texts = sendable_texts(rendered)
        old_texts, old_media = answer.text_ids, answer.media_ids
        new_texts: list[int] = []
        cost = 0
        for i, text in enumerate(texts):
            cost += 1
            if i < len(old_texts) and await self._edit_text(chat_id, old_texts[i], text):
                new_texts.append(old_texts[i])
                continue
            new_texts.extend(m.message_id for m in await self.send_text(chat_id, text, where))
        for stale in [*old_texts[len(texts) :], *old_media]:
            with contextlib.suppress(TelegramError):
                await self.bot.delete_message(chat_id, stale)
        answer.text_ids, answer.media_ids = new_texts, []
        run = _Steps(None)
        await self._send_media(chat_id, rendered.images, rendered.files, where, answer, run)
        return cost + run.cost

    async def show_line(
        self, chat_id: int | str, text: str, message_id: int | None, where: Where
    ) -> tuple[int | None, int]:
        """Send or edit a one-line message (a chat's progress); ``(its id, messages cost)``.
        A message that can no longer be edited is replaced by a new one."""
        markup = escape(text)
        if message_id is not None:
            try:
                await self.bot.edit_message_text(
                    markup,
                    chat_id=chat_id,
                    message_id=message_id,
                    parse_mode=ParseMode.HTML,
                    link_preview_options=NO_PREVIEW,
                )
                return message_id, 1
            except BadRequest as exc:
                if is_not_modified(exc):
                    return message_id, 0
                log.info("telegram: progress message %s in %s: %s", message_id, chat_id, exc)
        sent = await self.send_text(chat_id, markup, where)
        return (sent[0].message_id if sent else None), 1

    async def remove(self, chat_id: int | str, message_id: int) -> None:
        """Delete a message (best effort: it may be gone already)."""
        with contextlib.suppress(TelegramError):
            await self.bot.delete_message(chat_id, message_id)

    # -- chat actions ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def chat_action(self, chat_id: int, thread_id: int | None) -> AsyncIterator[None]:
        """ "typing…" while the command runs, once it takes longer than ``typing_after_s``."""

        async def loop() -> None:
            await asyncio.sleep(self.typing_after_s)
            while True:
                await self.action(chat_id, ChatAction.TYPING, thread_id)
                await asyncio.sleep(ACTION_EVERY_S)

        task = self._spawn(loop())
        try:
            yield
        finally:
            task.cancel()

    async def action(self, chat_id: int | str, action: str, thread_id: int | None = None) -> None:
        try:
            await self.bot.send_chat_action(chat_id, action, message_thread_id=thread_id)
        except Exception as exc:  # best effort
            log.debug("telegram: chat action %s in %s failed: %s", action, chat_id, exc)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def aclose(self) -> None:
        """Cancel the chat-action loops still running and wait for them to end."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- sending ---------------------------------------------------------------------------

    async def _send_media(
        self,
        chat_id: int | str,
        images: Sequence[Image],
        files: Sequence[Attachment],
        where: Where,
        answer: Answer,
        run: _Steps | None = None,
    ) -> None:
        run = run or _Steps(None)
        photos = [i for i in images if len(i.png) <= PHOTO_LIMIT]
        as_files = [Attachment(i.png, i.filename, i.caption) for i in images if i not in photos]
        if photos:
            await self.action(chat_id, ChatAction.UPLOAD_PHOTO, where.thread_id)
        for start in range(0, len(photos), ALBUM_MAX):
            chunk = photos[start : start + ALBUM_MAX]
            sent = await run.step(partial(self._send_photos, chat_id, chunk, where), len(chunk))
            answer.media_ids.extend(m.message_id for m in sent)
        files = [*as_files, *files]
        if files:
            await self.action(chat_id, ChatAction.UPLOAD_DOCUMENT, where.thread_id)
        for f in files:
            sent = await run.step(partial(self._send_document, chat_id, f, where))
            answer.media_ids.extend(m.message_id for m in sent)

    async def send_text(self, chat_id: int | str, text: str, where: Where) -> list[Message]:
        """One HTML message; refused HTML goes again as plain text, a too long one as a file."""
        kw = where.kwargs()
        try:
            m = await self.net(
                lambda: self.bot.send_message(
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
                m = await self.net(
                    lambda: self.bot.send_message(
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
        self, chat_id: int | str, images: Sequence[Image], where: Where
    ) -> list[Message]:
        kw = where.kwargs()
        try:
            if len(images) == 1:
                img = images[0]
                m = await self.net(
                    lambda: self.bot.send_photo(
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
            return list(await self.net(lambda: self.bot.send_media_group(chat_id, media, **kw)))
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

    async def _send_captioned(
        self, chat_id: int | str, photo: Image, caption: str, where: Where
    ) -> list[Message]:
        """One photo with an HTML caption; refused HTML goes again as a plain caption."""
        kw = where.kwargs()

        def send(text: str, mode: str | None) -> Awaitable[Message]:
            return self.bot.send_photo(
                chat_id, photo.png, caption=text, parse_mode=mode, filename=photo.filename, **kw
            )

        try:
            return [await self.net(lambda: send(caption, ParseMode.HTML))]
        except BadRequest as exc:
            if not is_parse_error(exc):
                raise
            log.warning("telegram: HTML caption refused in %s (%s); sending it plain", chat_id, exc)
            return [await self.net(lambda: send(plain_caption(html_to_plain(caption)), None))]

    async def _send_document(
        self, chat_id: int | str, f: Attachment, where: Where
    ) -> list[Message]:
        kw = where.kwargs()
        if len(f.data) > FILE_LIMIT:
            size = len(f.data) / 1024 / 1024
            note = f"{f.filename} is {size:.0f} MB, over Telegram's 50 MB limit for bots."
            return await self.send_text(chat_id, note, where)
        m = await self.net(
            lambda: self.bot.send_document(
                chat_id,
                f.data,
                filename=f.filename,
                caption=plain_caption(f.description) or None,
                **kw,
            )
        )
        return [m]

    async def net(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry network failures (never refusals) ``network_retries`` times with backoff."""
        backoff = Backoff(NET_RETRY_INITIAL_S, NET_RETRY_MAX_S)
        while True:
            try:
                return await call()
            except BadRequest:  # a refusal (BadRequest is a NetworkError in the library)
                raise
            except NetworkError as exc:
                if backoff.failures >= self.network_retries:
                    raise
                log.info("telegram: network error (%s), retrying", exc)
                await backoff.wait()

    async def _edit_text(self, chat_id: int, message_id: int, text: str) -> bool:
        """Edit one message; False when it cannot be edited (deleted, too old)."""

        async def edit(body: str, parse_mode: str | None) -> None:
            await self.net(
                lambda: self.bot.edit_message_text(
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
