"""A fake Telegram Bot API on 127.0.0.1 that the real python-telegram-bot talks to.

``FakeTelegram`` is one aiohttp server; every token gets its own :class:`FakeBot` (username,
pending updates, recorded calls, injected failures), so tests sharing one server never see each
other's traffic. Point the library at it with ``base_url=fake.base_url`` (``…/bot``; the token is
appended as Telegram's own URL scheme does).

It answers like Telegram (``{"ok": true, "result": …}``, message objects with ``message_id``,
``chat``, ``date``, ``text``) and enforces Telegram's limits: visible text over 4096 UTF-16 units
→ 400 ``message is too long``, captions over 1024 → 400, malformed or unsupported HTML →
400 ``can't parse entities``, ``getUpdates`` while a webhook is set or while another poller
waits → 409 ``Conflict``. Failures are injected with :meth:`FakeBot.fail` (429 with
``retry_after``, 403, 409, …). ``getUpdates`` long-polls on an ``asyncio.Event``: injecting an
update wakes it at once, so tests never sleep to synchronise.

Flood limits, behind a switch (``FakeTelegram(flood=FloodLimits())`` or
:meth:`FakeBot.enforce`; off by default so tests that do not care keep working): about one
message a second per chat with a short burst, at most 20 messages a minute into a group, about
30 a second overall (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this);
past them the call gets 429 ``Too Many Requests: retry after N`` with ``retry_after``. An album
of N photos counts as N messages and an edit as one (Telegram does not document either: the
fake is conservative). :attr:`FakeBot.outage` makes chosen methods answer 500 for a while;
:meth:`FakeBot.hold` delivers a message but holds its answer back (a send in flight when the
bot is killed).

Run alone: ``python -m tests.fakes.telegram_api [port]`` (prints the base URL, then serves;
``NBHELP_TELEGRAM__BASE_URL`` = that URL, any token; a bot is created per token).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
PHOTO_LIMIT = 10 * 1024 * 1024
FILE_LIMIT = 50 * 1024 * 1024
SEND_METHODS = ("sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument")
#: Calls that count against the flood limits.
FLOOD_METHODS = frozenset(
    {*SEND_METHODS, "editMessageText", "editMessageCaption", "editMessageMedia"}
)
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
# Parameters Telegram takes as plain strings; every other form field is JSON-encoded.
STRING_FIELDS = {
    "text",
    "caption",
    "parse_mode",
    "action",
    "url",
    "secret_token",
    "description",
    "short_description",
    "name",
    "emoji",
    "title",
    "language_code",
    "inline_message_id",
    "business_connection_id",
    "message_effect_id",
    "ip_address",
}
TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "blockquote",
}
ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


# --- Telegram's HTML, as strictly as Telegram parses it -------------------------------------


class _TelegramHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.text: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS:
            self._fail(f'Unsupported start tag "{tag}"')
        if tag == "a" and not dict(attrs).get("href"):
            pass  # Telegram tolerates an <a> without href (plain text)
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f'Unsupported start tag "{tag}"')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            self._fail(f'Unexpected end tag "{tag}"')
        elif self.stack[-1] != tag:
            self._fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1]}"')
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data:
            self._fail("Unexpected '<'; use &lt;")
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ENTITIES:
            self._fail(f'Unsupported HTML entity "&{name};"')
        self.text.append(ENTITIES.get(name, ""))

    def handle_charref(self, name: str) -> None:
        try:
            self.text.append(chr(int(name[1:], 16) if name[:1] in "xX" else int(name)))
        except (ValueError, OverflowError):
            self._fail(f'Unsupported HTML entity "&#{name};"')

    def handle_comment(self, data: str) -> None:
        self._fail("Unsupported comment")

    def handle_decl(self, decl: str) -> None:
        self._fail("Unsupported declaration")

    def handle_pi(self, data: str) -> None:
        self._fail("Unsupported processing instruction")


def parse_html(markup: str) -> str:
    """The visible text of Telegram HTML; :class:`ApiError` 400 like Telegram's when malformed."""
    p = _TelegramHTML()
    p.feed(markup)
    p.close()
    if p.rawdata:  # an unfinished "<tag" at the end
        p._fail("Unclosed start tag at end of text")
    if p.error is None and p.stack:
        p._fail(f'Can\'t find end tag corresponding to start tag "{p.stack[-1]}"')
    if p.error:
        raise ApiError(400, f"Bad Request: can't parse entities: {p.error}")
    return "".join(p.text)


def visible(text: str, parse_mode: str | None) -> str:
    if parse_mode is None or parse_mode == "":
        return text
    if str(parse_mode).upper() == "HTML":
        return parse_html(text)
    raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r} in this fake")


# --- flood limits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's documented flood limits (the per-chat burst size is not documented)."""

    chat_rate: float = 1.0  # messages a second in one chat, on average ...
    chat_burst: int = 4  # ... with this short burst (unverified)
    group_count: int = 20  # messages into one group ...
    group_period: float = 60.0  # ... per this many seconds
    global_count: int = 30  # messages overall ...
    global_period: float = 1.0  # ... per this many seconds


class _Flood:
    """The limits' state for one bot: a token bucket per chat, sliding windows per group and
    overall."""

    def __init__(self, limits: FloodLimits, clock: Callable[[], float]) -> None:
        self.limits, self.clock = limits, clock
        self.buckets: dict[int, tuple[float, float]] = {}  # chat -> (tokens, stamp)
        self.groups: dict[int, deque[float]] = {}
        self.overall: deque[float] = deque()
        self.refused = 0

    @staticmethod
    def _window_wait(
        stamps: deque[float], count: int, period: float, cost: int, now: float
    ) -> float:
        while stamps and stamps[0] <= now - period:
            stamps.popleft()
        excess = len(stamps) + cost - count
        if excess <= 0:
            return 0.0
        return stamps[min(excess, len(stamps)) - 1] + period - now

    def wait(self, chat_id: int, cost: int) -> float:
        lim, now = self.limits, self.clock()
        tokens, stamp = self.buckets.get(chat_id, (float(lim.chat_burst), now))
        tokens = min(float(lim.chat_burst), tokens + (now - stamp) * lim.chat_rate)
        self.buckets[chat_id] = (tokens, now)
        need = min(cost, lim.chat_burst)
        waits = [0.0 if tokens >= need else (need - tokens) / lim.chat_rate]
        waits.append(
            self._window_wait(self.overall, lim.global_count, lim.global_period, cost, now)
        )
        if chat_id < 0:
            stamps = self.groups.setdefault(chat_id, deque())
            waits.append(self._window_wait(stamps, lim.group_count, lim.group_period, cost, now))
        return max(waits)

    def book(self, chat_id: int, cost: int) -> None:
        now = self.clock()
        tokens, _ = self.buckets[chat_id]
        self.buckets[chat_id] = (tokens - cost, now)
        self.overall.extend([now] * cost)
        if chat_id < 0:
            self.groups.setdefault(chat_id, deque()).extend([now] * cost)


# --- recorded calls and injected failures ----------------------------------------------------


@dataclass
class Upload:
    filename: str
    data: bytes
    content_type: str


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, Upload] = field(default_factory=dict)
    status: int = 0  # 0 while the call is in progress (a long poll), then the HTTP status
    result: Any = None
    error: str | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def failed(self) -> bool:
        return self.status not in (0, 200)

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass
class Failure:
    method: str
    times: int
    code: int
    description: str
    parameters: dict[str, Any] | None
    chat_id: Any = None


# --- one bot -----------------------------------------------------------------------------


class FakeBot:
    """Everything the fake knows about one token."""

    def __init__(self, token: str, username: str, bot_id: int) -> None:
        self.token, self.username, self.id = token, username, bot_id
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.members: dict[tuple[int, int], str] = {}
        self.gone: dict[int, tuple[int, str]] = {}  # chat id -> (code, description)
        self.chats: dict[int, dict[str, Any]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.failures: list[Failure] = []
        self.sent_total = 0  # successful sends, all chats (cheap to poll in benchmarks)
        self.flood: _Flood | None = None
        self.outage: set[str] = set()  # methods answering 500 Internal Server Error now
        self.holds: dict[tuple[str, int | None], asyncio.Event] = {}
        self.accepted: dict[int, list[float]] = {}  # chat -> arrival of each message unit
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._poll_generation = 0
        self.closed = False

    # -- the user's side: updates ------------------------------------------------------------

    @property
    def user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": "nbhelp", "username": self.username}

    def chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        if chat_id not in self.chats or chat_type is not None:
            kind = chat_type or ("private" if chat_id > 0 else "supergroup")
            chat: dict[str, Any] = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = f"user{chat_id}"
            else:
                chat["title"] = f"Group {chat_id}"
            self.chats[chat_id] = chat
        return self.chats[chat_id]

    def message(
        self,
        text: str,
        *,
        chat_id: int = 1001,
        chat_type: str | None = None,
        user_id: int | None = None,
        first_name: str = "Ada",
        reply_to: dict[str, Any] | None = None,
        thread_id: int | None = None,
        sender_chat: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A user's message (not yet delivered: see :meth:`send`)."""
        chat = self.chat(chat_id, chat_type)
        uid = user_id if user_id is not None else (chat_id if chat_id > 0 else 501)
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": uid, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        if text.startswith("/"):
            first = text.split(maxsplit=1)[0] if text.strip() else text
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16(first)}]
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if sender_chat is not None:
            msg["sender_chat"] = sender_chat
        return msg

    def send(self, text: str, **kw: Any) -> dict[str, Any]:
        """A user sends ``text``: inject it as an update and return the message."""
        msg = self.message(text, **kw)
        self.inject({"message": msg})
        return msg

    def edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        """The user edits an earlier message: an ``edited_message`` update."""
        edited = {k: v for k, v in message.items() if k != "entities"}
        edited.update(text=text, edit_date=int(time.time()))
        if text.startswith("/"):
            first = text.split(maxsplit=1)[0]
            edited["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16(first)}]
        self.inject({"edited_message": edited})
        return edited

    def inject(self, update: dict[str, Any]) -> dict[str, Any]:
        update.setdefault("update_id", next(self._update_ids))
        self.updates.append(update)
        self._wake.set()
        self._wake = asyncio.Event()
        return update

    async def deliver_webhook(
        self, update: dict[str, Any], *, secret: str | bool | None = True
    ) -> int:
        """POST an update to the registered webhook as Telegram would; the HTTP status.

        ``secret=True`` sends the secret token set by ``setWebhook``; a string sends that one;
        ``None`` or ``False`` sends no header.
        """
        assert self.webhook is not None, "no webhook set"
        update.setdefault("update_id", next(self._update_ids))
        headers = {"Content-Type": "application/json"}
        token = self.webhook.get("secret_token") if secret is True else secret
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(token)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook["url"], data=json.dumps(update), headers=headers) as resp,
        ):
            return resp.status

    # -- test controls -------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        times: int = 1,
        code: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
        chat_id: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (to ``chat_id``, if given) fail."""
        params: dict[str, Any] | None = None
        if code == 429:
            retry_after = 1 if retry_after is None else retry_after
            params = {"retry_after": retry_after}
            description = description or f"Too Many Requests: retry after {retry_after}"
        elif code == 409:
            description = description or (
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running"
            )
        elif code == 403:
            description = description or "Forbidden: bot was kicked from the group chat"
        self.failures.append(
            Failure(method, times, code, description or "Bad Request", params, chat_id)
        )

    def enforce(
        self,
        limits: FloodLimits | None = FloodLimits(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Answer 429 past Telegram's flood limits (None: stop enforcing them)."""
        self.flood = None if limits is None else _Flood(limits, clock)

    @property
    def flood_refusals(self) -> int:
        return 0 if self.flood is None else self.flood.refused

    def hold(self, method: str, chat_id: int | None = None) -> asyncio.Event:
        """The next ``method`` call (to ``chat_id``) is carried out but not answered until the
        returned event is set (or the client goes away: the message stays delivered)."""
        event = asyncio.Event()
        self.holds[(method, chat_id)] = event
        return event

    def most_in_window(self, chat_id: int, period: float) -> int:
        """The most messages accepted into a chat within any ``period`` seconds."""
        times = sorted(self.accepted.get(chat_id, []))
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= period:
                start += 1
            best = max(best, end - start + 1)
        return best

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        self.members[(chat_id, user_id)] = status

    def set_gone(
        self, chat_id: int, code: int = 403, description: str = "Forbidden: bot was kicked"
    ) -> None:
        self.gone[chat_id] = (code, description)

    def calls_of(self, *methods: str, chat_id: Any = None, ok: bool | None = True) -> list[Call]:
        """Calls in arrival order: ``ok=True`` succeeded, ``False`` failed, ``None`` any (even
        one still in progress)."""
        return [
            c
            for c in self.calls
            if (not methods or c.method in methods)
            and (chat_id is None or c.chat_id == chat_id)
            and (ok is None or (c.ok if ok else c.failed))
        ]

    def sent(self, chat_id: Any = None) -> list[Call]:
        """Successful message sends (text, photo, album, document), in order."""
        return self.calls_of(*SEND_METHODS, chat_id=chat_id)

    def texts(self, chat_id: Any = None) -> list[str]:
        """The markup of every text message sent successfully."""
        return [c.params["text"] for c in self.calls_of("sendMessage", chat_id=chat_id)]

    async def wait_for(self, predicate: Callable[[FakeBot], Any], within: float = 60.0) -> Any:
        """Wait (no polling) until ``predicate(self)`` is truthy; returns its value."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), within)
            return predicate(self)

    async def wait_sent(self, n: int, chat_id: Any = None, within: float = 60.0) -> list[Call]:
        """Wait until at least ``n`` messages went to ``chat_id`` (any chat when None)."""
        await self.wait_for(lambda b: len(b.sent(chat_id)) >= n, within)
        return self.sent(chat_id)

    async def wait_calls(
        self,
        method: str,
        n: int = 1,
        chat_id: Any = None,
        within: float = 60.0,
        ok: bool | None = None,
    ) -> list[Call]:
        """Wait until ``method`` was called ``n`` times (failed calls count unless ``ok``)."""
        await self.wait_for(lambda b: len(b.calls_of(method, chat_id=chat_id, ok=ok)) >= n, within)
        return self.calls_of(method, chat_id=chat_id, ok=ok)

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the Bot API ---------------------------------------------------------------------

    def _injected_failure(self, method: str, params: dict[str, Any]) -> ApiError | None:
        for f in self.failures:
            if f.method == method and f.times > 0 and (f.chat_id in (None, params.get("chat_id"))):
                f.times -= 1
                return ApiError(f.code, f.description, f.parameters)
        return None

    async def call(
        self, method: str, params: dict[str, Any], files: dict[str, Upload]
    ) -> tuple[int, Any]:
        call = Call(method, params, files)
        self.calls.append(call)  # recorded on arrival (a long poll shows while it waits)
        await self._changed_now()
        try:
            failure = self._injected_failure(method, params)
            if failure is not None:
                raise failure
            if method in self.outage:
                raise ApiError(500, "Internal Server Error")
            handler = getattr(self, f"api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            cost = self._flood_check(method, params)
            call.result = await handler(params, files)
            self._flood_book(params, cost)
            held = self._held(method, params)
            if held is not None:
                call.status = 200  # delivered: only the answer is held back
                if method in SEND_METHODS:
                    self.sent_total += 1
                await self._changed_now()
                await held.wait()
                return 200, {"ok": True, "result": call.result}
        except asyncio.CancelledError:  # the client went away (a cancelled long poll)
            if call.status != 200:
                call.status, call.error = 499, "client closed the request"
            raise
        except ApiError as exc:
            call.status, call.error = exc.code, exc.description
            await self._changed_now()
            body: dict[str, Any] = {
                "ok": False,
                "error_code": exc.code,
                "description": exc.description,
            }
            if exc.parameters:
                body["parameters"] = exc.parameters
            return exc.code, body
        call.status = 200
        if method in SEND_METHODS:
            self.sent_total += 1
        await self._changed_now()
        return 200, {"ok": True, "result": call.result}

    def _flood_check(self, method: str, params: dict[str, Any]) -> int:
        """The message units of a call, once the flood limits allow them (else 429)."""
        if method not in FLOOD_METHODS:
            return 0
        cost = len(params.get("media") or ()) if method == "sendMediaGroup" else 1
        chat = params.get("chat_id")
        if self.flood is None or chat is None or not str(chat).lstrip("-").isdigit():
            return cost
        wait = self.flood.wait(int(chat), max(1, cost))
        if wait > 0:
            self.flood.refused += 1
            retry = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        self.flood.book(int(chat), max(1, cost))
        return cost

    def _flood_book(self, params: dict[str, Any], cost: int) -> None:
        chat = params.get("chat_id")
        if cost and chat is not None and str(chat).lstrip("-").isdigit():
            self.accepted.setdefault(int(chat), []).extend([time.monotonic()] * cost)

    def _held(self, method: str, params: dict[str, Any]) -> asyncio.Event | None:
        chat = params.get("chat_id")
        for key in (
            (method, int(chat) if str(chat).lstrip("-").isdigit() else None),
            (method, None),
        ):
            if key in self.holds:
                return self.holds.pop(key)
        return None

    def _target(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(chat_id, str) and not chat_id.lstrip("-").isdigit():
            raise ApiError(400, "Bad Request: chat not found")
        chat_id = int(chat_id)
        if chat_id in self.gone:
            code, description = self.gone[chat_id]
            raise ApiError(code, description)
        return chat_id

    def _new_message(self, chat_id: int, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id),
            "from": self.user,
            **content,
        }
        if params.get("message_thread_id") is not None:
            msg["message_thread_id"] = params["message_thread_id"]
        self.messages[(chat_id, msg["message_id"])] = msg
        return msg

    def _caption(self, params: dict[str, Any], item: dict[str, Any] | None = None) -> dict:
        src = item if item is not None else params
        caption = src.get("caption")
        if not caption:
            return {}
        shown = visible(caption, src.get("parse_mode"))
        if utf16(shown) > CAPTION_LIMIT:
            raise ApiError(400, "Bad Request: message caption is too long")
        return {"caption": shown}

    def _file(self, value: Any, files: dict[str, Upload], limit: int, what: str) -> Upload:
        if isinstance(value, str) and value.startswith("attach://"):
            value = files.get(value.removeprefix("attach://"))
        if isinstance(value, Upload):
            if len(value.data) > limit:
                raise ApiError(400, f"Bad Request: {what} is too big")
            if not value.data:
                raise ApiError(400, f"Bad Request: {what} must be non-empty")
            return value
        if isinstance(value, str) and value:
            return Upload(value, b"", "")  # a file_id or URL
        raise ApiError(400, f"Bad Request: there is no {what} in the request")

    def _photo_sizes(self, upload: Upload) -> list[dict[str, Any]]:
        n = next(self._file_ids)
        return [
            {
                "file_id": f"photo{n}",
                "file_unique_id": f"uphoto{n}",
                "width": 640,
                "height": 480,
                "file_size": len(upload.data),
            }
        ]

    async def api_getMe(self, params: dict, files: dict) -> Any:
        return {
            **self.user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def api_logOut(self, params: dict, files: dict) -> Any:
        return True

    async def api_close(self, params: dict, files: dict) -> Any:
        return True

    async def api_deleteWebhook(self, params: dict, files: dict) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return True

    async def api_setWebhook(self, params: dict, files: dict) -> Any:
        url = params.get("url") or ""
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN.match(str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if not url:
            self.webhook = None
            return True
        self.webhook = {"url": url, "secret_token": secret, **params}
        self._wake.set()  # a waiting poller gets its 409
        self._wake = asyncio.Event()
        return True

    async def api_getWebhookInfo(self, params: dict, files: dict) -> Any:
        return {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }

    async def api_getUpdates(self, params: dict, files: dict) -> Any:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates")
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake.set()  # an older poller still waiting gets its 409
        self._wake = asyncio.Event()
        deadline = time.monotonic() + timeout
        while True:
            ready = [u for u in self.updates if _allowed(u, allowed)][:limit]
            if ready or self.closed:
                return ready
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
            if self.webhook is not None:
                raise ApiError(409, "Conflict: webhook was set during getUpdates")
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            wake = self._wake
            try:
                await asyncio.wait_for(wake.wait(), left)
            except TimeoutError:
                return []

    async def api_setMyCommands(self, params: dict, files: dict) -> Any:
        commands = params.get("commands") or []
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: too many commands")
        for c in commands:
            if not COMMAND_NAME.match(str(c.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: command description is invalid")
        self.commands = commands
        return True

    async def api_getMyCommands(self, params: dict, files: dict) -> Any:
        return self.commands

    async def api_deleteMyCommands(self, params: dict, files: dict) -> Any:
        self.commands = []
        return True

    async def api_getChatMember(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        user_id = int(params.get("user_id") or 0)
        status = self.members.get((chat_id, user_id), "member")
        user = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "administrator":
            flags = [
                "can_be_edited",
                "is_anonymous",
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_promote_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
            ]
            return {"status": "administrator", "user": user, **dict.fromkeys(flags, False)}
        if status in ("left", "kicked"):
            extra = {"until_date": 0} if status == "kicked" else {}
            return {"status": status, "user": user, **extra}
        return {"status": "member", "user": user}

    async def api_sendChatAction(self, params: dict, files: dict) -> Any:
        self._target(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def api_sendMessage(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        text = params.get("text")
        if not text:
            raise ApiError(400, "Bad Request: message text is empty")
        shown = visible(str(text), params.get("parse_mode"))
        if not shown.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16(shown) > TEXT_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._new_message(chat_id, params, text=shown)

    async def api_editMessageText(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        key = (chat_id, int(params.get("message_id") or 0))
        msg = self.messages.get(key)
        if msg is None or "text" not in msg:
            raise ApiError(400, "Bad Request: message to edit not found")
        shown = visible(str(params.get("text") or ""), params.get("parse_mode"))
        if not shown.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16(shown) > TEXT_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        if shown == msg["text"]:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        msg.update(text=shown, edit_date=int(time.time()))
        return msg

    async def api_deleteMessage(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        if self.messages.pop((chat_id, int(params.get("message_id") or 0)), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    async def api_sendPhoto(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        caption = self._caption(params)
        upload = self._file(params.get("photo"), files, PHOTO_LIMIT, "photo")
        return self._new_message(chat_id, params, photo=self._photo_sizes(upload), **caption)

    async def api_sendDocument(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        caption = self._caption(params)
        upload = self._file(params.get("document"), files, FILE_LIMIT, "document")
        n = next(self._file_ids)
        doc = {
            "file_id": f"doc{n}",
            "file_unique_id": f"udoc{n}",
            "file_name": upload.filename,
            "mime_type": upload.content_type or "application/octet-stream",
            "file_size": len(upload.data),
        }
        return self._new_message(chat_id, params, document=doc, **caption)

    async def api_sendMediaGroup(self, params: dict, files: dict) -> Any:
        chat_id = self._target(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: wrong number of media in the album (2-10)")
        group_id = str(next(self._file_ids))
        out = []
        prepared = []
        for item in media:
            if item.get("type") != "photo":
                raise ApiError(400, "Bad Request: only photos are supported by this fake")
            caption = self._caption(params, item)
            upload = self._file(item.get("media"), files, PHOTO_LIMIT, "photo")
            prepared.append((upload, caption))
        for upload, caption in prepared:
            out.append(
                self._new_message(
                    chat_id,
                    params,
                    photo=self._photo_sizes(upload),
                    media_group_id=group_id,
                    **caption,
                )
            )
        return out


def _allowed(update: dict[str, Any], allowed: Iterable[str] | None) -> bool:
    if not allowed:
        return True
    return any(k in update for k in allowed)


def _decode(name: str, value: str) -> Any:
    if name in STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


# --- the server ---------------------------------------------------------------------------


class FakeTelegram:
    """The HTTP server. ``async with FakeTelegram() as fake: bot = fake.new_bot()``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, flood: FloodLimits | None = None
    ) -> None:
        self.host, self.port = host, port
        self.flood = flood  # enforced for every bot made from now on
        self.bots: dict[str, FakeBot] = {}
        self.revoked: set[str] = set()
        self._ids = itertools.count(7_000_000_001)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``base_url`` / ``NBHELP_TELEGRAM__BASE_URL``: the token is appended."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def revoke(self, token: str) -> None:
        """Answer 401 Unauthorized to every call with this token."""
        self.revoked.add(token)

    def bot(self, token: str, username: str | None = None) -> FakeBot:
        """The bot for ``token`` (created on first use, as any token works here)."""
        if token not in self.bots:
            bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 0
            bot_id = bot_id or next(self._ids)
            bot = self.bots[token] = FakeBot(token, username or f"nbhelp{bot_id}_bot", bot_id)
            if self.flood is not None:
                bot.enforce(self.flood)
        return self.bots[token]

    def new_bot(self, username: str = "nbhelp_test_bot") -> FakeBot:
        bot_id = next(self._ids)
        return self.bot(f"{bot_id}:TEST-{bot_id}", username)

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=FILE_LIMIT + 10 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_post("/_fake/{token}/send", self._manual_send)
        app.router.add_get("/_fake/{token}/calls", self._manual_calls)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for bot in self.bots.values():
            bot.closed = True
            bot._wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        if ":" not in token:
            return _json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if token in self.revoked:  # what Telegram answers for a revoked or made-up token
            return _json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        params: dict[str, Any] = {k: _decode(k, v) for k, v in request.query.items()}
        files: dict[str, Upload] = {}
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "application/json":
                params.update(await request.json())
            else:
                form = await request.post()
                for name, value in form.items():
                    if isinstance(value, web.FileField):
                        upload = Upload(value.filename, value.file.read(), value.content_type)
                        files[name] = upload
                        params[name] = upload
                    else:
                        params[name] = _decode(name, str(value))
        status, body = await self.bot(token).call(method, params, files)
        return _json(status, body)

    async def _manual_send(self, request: web.Request) -> web.Response:
        """For manual runs: ``curl -d 'text=/help' …/_fake/<token>/send`` (chat_id optional)."""
        form = await request.post()
        bot = self.bot(request.match_info["token"])
        msg = bot.send(str(form.get("text", "/help")), chat_id=int(form.get("chat_id", 1001)))
        return _json(200, {"ok": True, "result": msg})

    async def _manual_calls(self, request: web.Request) -> web.Response:
        """For manual runs: every recorded call of a bot (uploads as sizes)."""
        bot = self.bot(request.match_info["token"])
        out = [
            {
                "method": c.method,
                "status": c.status,
                "params": {
                    k: (f"<{len(v.data)} bytes>" if isinstance(v, Upload) else v)
                    for k, v in c.params.items()
                },
                "error": c.error,
            }
            for c in bot.calls
        ]
        return _json(200, out)


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def _serve(port: int) -> None:  # pragma: no cover - manual use
    async with FakeTelegram(port=port) as fake:
        print(f"fake Bot API: NBHELP_TELEGRAM__BASE_URL={fake.base_url}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 8081))
