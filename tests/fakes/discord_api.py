"""A fake Discord on 127.0.0.1: REST API v10 and a WebSocket gateway, for the real discord.py.

Point discord.py at it with ``Route.BASE = fake.api_base`` and
``DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`` (the adapter does this from
``NBHELP_DISCORD__API_BASE`` / ``NBHELP_DISCORD__GATEWAY_URL``).

It enforces the rules the real Discord enforces and a bot most often breaks:

* an interaction must get its first callback within ``ack_window`` (3 s) of the
  ``INTERACTION_CREATE`` dispatch, else 404 ``Unknown interaction`` (10062); a second
  callback is 400 (40060); follow-ups need an acknowledged interaction (else 404 10015);
  the token takes follow-ups and edits for ``token_ttl`` (15 minutes), then 401
  ``Invalid Webhook Token`` (50027; discord/discord-api-docs#6851, #2461);
  :meth:`FakeDiscord.age` makes an interaction older;
* message content ≤ 2000 characters (UTF-16 units), embeds ≤ 10 a message with title ≤ 256,
  description ≤ 4096 and ≤ 6000 in total → HTTP 400 ``{"code": 50035}``; an empty message
  → 400 (50006); ≤ 10 files, each ≤ ``filesize_limit`` → 413 (40005);
* command sync: names, descriptions ≤ 100, ≤ 25 options/choices, required options first,
  never choices *and* autocomplete;
* JSON responses with ``Content-Type: application/json`` exactly (discord.py decodes
  nothing else); 429s with ``retry_after``, ``Via`` and ``X-RateLimit-*`` headers;
* the gateway: HELLO, READY after IDENTIFY (privileged intents refused with 4014 unless
  allowed), heartbeat ACK, RESUME → missed events replayed then RESUMED (an unknown session →
  INVALID_SESSION), and :meth:`FakeDiscord.drop` to cut the connection.

Everything is recorded; tests wait on recorded state with :meth:`FakeDiscord.wait_for`
(an ``asyncio.Condition``), never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000
APP_ID = 1100000000000000001
BOT_ID = APP_ID
GUILD_ID = 1200000000000000002
CHANNEL_ID = 1300000000000000003
DM_CHANNEL_ID = 1300000000000000004
USER_ID = 1400000000000000005
OTHER_USER_ID = 1400000000000000006
MiB = 1024 * 1024

# permission bits
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
MEMBER_PERMISSIONS = SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
MEMBER_PERMISSIONS |= USE_APPLICATION_COMMANDS
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content

OPTION_TYPES = {"string": 3, "integer": 4, "boolean": 5}
_NAME_RE = re.compile(r"^[-_\w]{1,32}$")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text).replace("\u200b", "")


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON with ``Content-Type: application/json`` exactly (no charset)."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=hdrs)


def error(status: int, code: int, message: str, errors: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors is not None:
        body["errors"] = errors
    return json_response(body, status)


def _form_error(path: str, message: str, code: str = "BASE_TYPE_MAX_LENGTH") -> web.Response:
    errors: dict[str, Any] = {}
    node = errors
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = {"_errors": [{"code": code, "message": message}]}
    return error(400, 50035, "Invalid Form Body", errors)


@dataclass
class Sent:
    """A message the bot posted (interaction response, follow-up or channel message)."""

    id: int
    channel_id: int
    payload: dict[str, Any]  # the JSON the bot sent (payload_json for multipart)
    files: list[tuple[str, bytes]]  # (filename, data)
    via: str  # "callback", "followup", "edit", "channel"
    at: float
    message: dict[str, Any]  # the message object returned to the bot

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds") or [])

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.payload.get("flags") or 0) & 64)

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        return self.payload.get("allowed_mentions")

    def text(self) -> str:
        """Content plus embed titles and descriptions (for assertions)."""
        parts = [self.content]
        for e in self.embeds:
            parts += [str(e.get("title") or ""), str(e.get("description") or "")]
        return "\n".join(p for p in parts if p)

    def plain(self) -> str:
        """:meth:`text` without markdown escapes (``re\\-run`` → ``re-run``)."""
        return _unescape(self.text())

    def custom_ids(self) -> list[str]:
        out: list[str] = []
        for row in self.payload.get("components") or []:
            for comp in row.get("components") or []:
                if comp.get("custom_id"):
                    out.append(comp["custom_id"])
        return out

    def pings(self) -> list[str]:
        """Who Discord would notify for this message (the allowed_mentions rules)."""
        am = self.allowed_mentions
        parse = ["users", "roles", "everyone"] if am is None else list(am.get("parse") or [])
        users = [] if am is None else list(am.get("users") or [])
        roles = [] if am is None else list(am.get("roles") or [])
        text = self.content  # mentions in embeds never notify
        out: list[str] = []
        if "everyone" in parse:
            out += re.findall(r"@(everyone|here)", text)
        for uid in re.findall(r"<@!?(\d+)>", text):
            if "users" in parse or uid in users:
                out.append(f"user:{uid}")
        for rid in re.findall(r"<@&(\d+)>", text):
            if "roles" in parse or rid in roles:
                out.append(f"role:{rid}")
        return out


@dataclass
class Callback:
    type: int
    data: dict[str, Any]
    files: list[tuple[str, bytes]]
    at: float
    status: int


@dataclass
class FakeInteraction:
    id: int
    token: str
    payload: dict[str, Any]
    dispatched_at: float
    ack_window: float
    callbacks: list[Callback] = field(default_factory=list)  # accepted ones
    rejected: list[Callback] = field(default_factory=list)  # refused (late, twice, invalid)
    messages: list[Sent] = field(default_factory=list)  # visible results, in order
    expect_ack: bool = True

    @property
    def acked_at(self) -> float | None:
        return self.callbacks[0].at if self.callbacks else None

    @property
    def ack_latency(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.dispatched_at

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0].type if self.callbacks else None

    @property
    def deferred(self) -> bool:
        return self.response_type == 5

    def late(self) -> bool:
        return any(c.status == 404 for c in self.rejected)

    def modal(self) -> dict[str, Any] | None:
        return next((c.data for c in self.callbacks if c.type == 9), None)

    def choices(self) -> list[dict[str, Any]] | None:
        cb = next((c for c in self.callbacks if c.type == 8), None)
        return None if cb is None else list(cb.data.get("choices") or [])

    def text(self) -> str:
        return "\n\n".join(m.text() for m in self.messages)

    def plain(self) -> str:
        return _unescape(self.text())


class _Session:
    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.seq = 0
        self.history: list[dict[str, Any]] = []


class FakeDiscord:
    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        ack_window: float = 3.0,
        token_ttl: float = 15 * 60.0,
        filesize_limit: int = 10 * MiB,
        heartbeat_interval_ms: int = 41250,
        allow_privileged_intents: bool = False,
    ) -> None:
        self.token = token
        self.ack_window = ack_window
        self.token_ttl = token_ttl  # follow-ups and edits by token: 401 50027 after this
        # called with each interaction as its first callback arrives (tests look at the world
        # at the moment Discord hears back)
        self.on_callback: Callable[[FakeInteraction], None] | None = None
        self.filesize_limit = filesize_limit
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allow_privileged_intents = allow_privileged_intents
        self._ids = itertools.count(1)
        self._cond = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        # records
        self.requests: list[tuple[str, str, int]] = []  # method, path, status
        self.unexpected: list[tuple[str, str]] = []
        self.synced: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global)
        self.sync_count = 0
        self.interactions: dict[int, FakeInteraction] = {}
        self.channel_messages: dict[int, list[Sent]] = {}
        self.rejected_messages: list[tuple[int, int, dict[str, Any]]] = []  # channel, status, body
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.connections = 0
        self.client_closes: list[int | None] = []  # close codes sent by the bot
        self.drops = 0
        # gateway state
        self._ws: web.WebSocketResponse | None = None
        self._ws_lock = asyncio.Lock()
        self._dropped: set[int] = set()
        self._sessions: dict[str, _Session] = {}
        self.session: _Session | None = None
        self.ready = False
        # behaviour switches
        self._rate_limits: list[dict[str, Any]] = []
        self._gone: dict[int, int] = {}  # channel id -> 404 | 403
        self.command_ids: dict[tuple[int | None, str, int], int] = {}

    # -- server ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_get("/gateway", self._gateway)
        r = app.router
        r.add_get(API + "/users/@me", self._users_me)
        r.add_get(API + "/oauth2/applications/@me", self._application)
        r.add_get(API + "/applications/@me", self._application)
        r.add_get(API + "/gateway", self._get_gateway)
        r.add_get(API + "/gateway/bot", self._get_gateway)
        r.add_put(API + "/applications/{app}/commands", self._put_commands)
        r.add_put(API + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_get(API + "/applications/{app}/commands", self._get_commands)
        r.add_get(API + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        r.add_post(API + "/interactions/{iid}/{token}/callback", self._callback)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_route("*", API + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_message)
        r.add_post(API + "/channels/{cid}/messages", self._channel_message)
        r.add_route("*", "/{tail:.*}", self._unexpected)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- waiting -----------------------------------------------------------------------------

    async def _changed(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], within: float = 60.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every recorded change)."""
        async with asyncio.timeout(within), self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                await self._cond.wait()

    async def wait_ready(self, within: float = 60.0) -> None:
        await self.wait_for(lambda: self.ready and self._ws is not None, within)

    # -- ids and objects ---------------------------------------------------------------------

    def snowflake(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    @staticmethod
    def user(user_id: int = USER_ID, name: str = "ama", *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": name,
            "global_name": name.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
        }

    def bot_user(self) -> dict[str, Any]:
        return {**self.user(BOT_ID, "nbhelp", bot=True), "verified": True, "flags": 0}

    def message(
        self,
        channel_id: int,
        content: str = "",
        *,
        author: dict[str, Any] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        flags: int = 0,
        message_id: int | None = None,
        guild_id: int | None = None,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": str(message_id or self.snowflake()),
            "channel_id": str(channel_id),
            "author": author or self.bot_user(),
            "content": content,
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": components or [],
        }
        if guild_id:
            msg["guild_id"] = str(guild_id)
        return msg

    # -- REST --------------------------------------------------------------------------------

    def _record(self, request: web.Request, status: int) -> None:
        self.requests.append((request.method, request.path, status))

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _ok_headers(self, bucket: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset-After": "1.0",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    async def _unexpected(self, request: web.Request) -> web.StreamResponse:
        self.unexpected.append((request.method, request.path))
        self._record(request, 404)
        await self._changed()
        return error(404, 0, "404: Not Found")

    async def _users_me(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self._record(request, 401)
            return error(401, 0, "401: Unauthorized")
        self._record(request, 200)
        return json_response(self.bot_user())

    async def _application(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return error(401, 0, "401: Unauthorized")
        self._record(request, 200)
        return json_response(
            {
                "id": str(APP_ID),
                "name": "nbhelp",
                "icon": None,
                "description": "help when cloud notebooks fail",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.user(USER_ID, "owner"),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "interactions_endpoint_url": None,
                "bot": self.bot_user(),
            }
        )

    async def _get_gateway(self, request: web.Request) -> web.StreamResponse:
        self._record(request, 200)
        return json_response(
            {
                "url": f"ws://127.0.0.1:{self.port}/gateway",
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    def _validate_commands(self, commands: list[dict[str, Any]]) -> str | None:
        seen: set[tuple[int, str]] = set()
        for i, c in enumerate(commands):
            ctype = int(c.get("type") or 1)
            name = str(c.get("name") or "")
            if (ctype, name) in seen:
                return f"{i}.name: duplicate command {name}"
            seen.add((ctype, name))
            if ctype == 1:
                if not _NAME_RE.match(name) or name != name.lower():
                    return f"{i}.name: invalid chat input command name {name!r}"
                if not 1 <= len(c.get("description") or "") <= 100:
                    return f"{i}.description: must be 1-100 characters"
            elif not 1 <= len(name) <= 32:
                return f"{i}.name: invalid context menu name {name!r}"
            options = c.get("options") or []
            if len(options) > 25:
                return f"{i}.options: at most 25"
            optional_seen = False
            for j, o in enumerate(options):
                if not _NAME_RE.match(o.get("name", "")) or o["name"] != o["name"].lower():
                    return f"{i}.options.{j}.name: invalid"
                if not 1 <= len(o.get("description") or "") <= 100:
                    return f"{i}.options.{j}.description: must be 1-100 characters"
                if o.get("required"):
                    if optional_seen:
                        return f"{i}.options.{j}: required options must come first"
                else:
                    optional_seen = True
                if len(o.get("choices") or []) > 25:
                    return f"{i}.options.{j}.choices: at most 25"
                if o.get("choices") and o.get("autocomplete"):
                    return f"{i}.options.{j}: choices and autocomplete are exclusive"
        return None

    async def _put_commands(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return error(401, 0, "401: Unauthorized")
        if request.match_info["app"] != str(APP_ID):
            self._record(request, 403)
            return error(
                403, 20012, "You are not authorized to perform this action on this application"
            )
        guild = int(request.match_info["guild"]) if "guild" in request.match_info else None
        commands = await request.json()
        problem = self._validate_commands(commands)
        if problem:
            self._record(request, 400)
            return _form_error(problem.split(":")[0], problem)
        out = []
        for c in commands:
            key = (guild, c["name"], int(c.get("type") or 1))
            cid = self.command_ids.setdefault(key, self.snowflake())
            item = {
                "id": str(cid),
                "application_id": str(APP_ID),
                "version": str(self.snowflake()),
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                **c,
            }
            if item.get("default_member_permissions") is not None:
                item["default_member_permissions"] = str(item["default_member_permissions"])
            if guild is not None:
                item["guild_id"] = str(guild)
            out.append(item)
        self.synced[guild] = out
        self.sync_count += 1
        self._record(request, 200)
        await self._changed()
        return json_response(out)

    async def _get_commands(self, request: web.Request) -> web.StreamResponse:
        guild = int(request.match_info["guild"]) if "guild" in request.match_info else None
        self._record(request, 200)
        return json_response(self.synced.get(guild, []))

    async def _read_message_body(
        self, request: web.Request
    ) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        if request.content_type.startswith("multipart/"):
            payload: dict[str, Any] = {}
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                data = await part.read(decode=False)  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(data)
                else:
                    files.append((part.filename or "file", bytes(data)))  # type: ignore[union-attr]
            return payload, files
        body = await request.read()
        return (json.loads(body) if body else {}), []

    def _check_message(
        self, data: dict[str, Any], files: list[tuple[str, bytes]], *, edit: bool = False
    ) -> web.Response | None:
        content = data.get("content")
        if content is not None and units(str(content)) > 2000:
            return _form_error("content", "Must be 2000 or fewer in length.")
        embeds = data.get("embeds") or []
        if len(embeds) > 10:
            return _form_error("embeds", "Must be 10 or fewer in length.")
        total = 0
        for i, e in enumerate(embeds):
            title, desc = str(e.get("title") or ""), str(e.get("description") or "")
            if units(title) > 256:
                return _form_error(f"embeds.{i}.title", "Must be 256 or fewer in length.")
            if units(desc) > 4096:
                return _form_error(f"embeds.{i}.description", "Must be 4096 or fewer in length.")
            fields = e.get("fields") or []
            if len(fields) > 25:
                return _form_error(f"embeds.{i}.fields", "Must be 25 or fewer in length.")
            total += units(title) + units(desc)
            total += sum(units(f.get("name", "")) + units(f.get("value", "")) for f in fields)
            total += units((e.get("footer") or {}).get("text", ""))
            total += units((e.get("author") or {}).get("name", ""))
        if total > 6000:
            return _form_error(
                "embeds", "Embed size exceeds maximum size of 6000", "MAX_EMBED_SIZE_EXCEEDED"
            )
        if len(files) > 10:
            return _form_error("files", "Must be 10 or fewer in length.")
        for _, blob in files:
            if len(blob) > self.filesize_limit:
                return error(413, 40005, "Request entity too large")
        for row in data.get("components") or []:
            for comp in row.get("components") or []:
                if len(str(comp.get("custom_id") or "")) > 100:
                    return _form_error("components", "custom_id must be 100 or fewer in length.")
                if len(str(comp.get("label") or "")) > 80:
                    return _form_error("components", "label must be 80 or fewer in length.")
        if not edit and not (content or embeds or files or data.get("components")):
            return error(400, 50006, "Cannot send an empty message")
        return None

    def _attachments(self, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        return [
            {
                "id": str(self.snowflake()),
                "filename": name,
                "size": len(blob),
                "url": f"http://127.0.0.1:{self.port}/attachments/{name}",
                "proxy_url": f"http://127.0.0.1:{self.port}/attachments/{name}",
            }
            for name, blob in files
        ]

    def _sent(
        self,
        channel_id: int,
        data: dict[str, Any],
        files: list[tuple[str, bytes]],
        via: str,
        *,
        message_id: int | None = None,
        guild_id: int | None = None,
    ) -> Sent:
        msg = self.message(
            channel_id,
            str(data.get("content") or ""),
            embeds=list(data.get("embeds") or []),
            attachments=self._attachments(files),
            components=list(data.get("components") or []),
            flags=int(data.get("flags") or 0),
            message_id=message_id,
            guild_id=guild_id,
        )
        return Sent(int(msg["id"]), channel_id, data, files, via, time.monotonic(), msg)

    def _interaction_by_token(self, token: str) -> FakeInteraction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    @staticmethod
    def _channel_of(ix: FakeInteraction) -> int:
        return int(ix.payload["channel_id"])

    @staticmethod
    def _guild_of(ix: FakeInteraction) -> int | None:
        g = ix.payload.get("guild_id")
        return int(g) if g else None

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        iid = int(request.match_info["iid"])
        ix = self.interactions.get(iid)
        body, files = await self._read_message_body(request)
        ctype = int(body.get("type") or 0)
        data = dict(body.get("data") or {})
        cb = Callback(ctype, data, files, now, 200)
        if ix is None or ix.token != request.match_info["token"]:
            self._record(request, 404)
            return error(404, 10062, "Unknown interaction")
        if self.on_callback is not None and not ix.callbacks:
            self.on_callback(ix)
        if now - ix.dispatched_at > ix.ack_window:
            cb.status = 404
            ix.rejected.append(cb)
            self._record(request, 404)
            await self._changed()
            return error(404, 10062, "Unknown interaction")
        if ix.callbacks:
            cb.status = 400
            ix.rejected.append(cb)
            self._record(request, 400)
            await self._changed()
            return error(400, 40060, "Interaction has already been acknowledged.")
        if ctype in (4, 7):
            problem = self._check_message(data, files)
            if problem is not None:
                cb.status = problem.status
                ix.rejected.append(cb)
                self._record(request, problem.status)
                await self._changed()
                return problem
        if ctype == 9 and not (
            data.get("custom_id") and data.get("title") and data.get("components")
        ):
            cb.status = 400
            ix.rejected.append(cb)
            return _form_error("data", "a modal needs custom_id, title and components")
        if ctype == 8 and len(data.get("choices") or []) > 25:
            cb.status = 400
            ix.rejected.append(cb)
            return _form_error("data.choices", "Must be 25 or fewer in length.")
        ix.callbacks.append(cb)
        interaction = {
            "id": str(ix.id),
            "type": ix.payload["type"],
            "response_message_loading": ctype == 5,
            "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64),
        }
        result: dict[str, Any] = {"interaction": interaction, "resource": {"type": ctype}}
        if ctype in (4, 5):
            if ctype == 5:
                data = {**data, "flags": int(data.get("flags") or 0) | 128}  # loading
            sent = self._sent(
                self._channel_of(ix), data, files, "callback", guild_id=self._guild_of(ix)
            )
            if ctype == 4:
                ix.messages.append(sent)
            ix.payload["_original"] = sent.message
            interaction["response_message_id"] = str(sent.id)
            result["resource"]["message"] = sent.message
        self._record(request, 200)
        await self._changed()
        return json_response(result)

    def _expired(self, ix: FakeInteraction | None) -> bool:
        return ix is not None and time.monotonic() - ix.dispatched_at > self.token_ttl

    def age(self, ix: FakeInteraction, seconds: float) -> None:
        """Make an interaction ``seconds`` older (its token expires after ``token_ttl``)."""
        ix.dispatched_at -= seconds
        for cb in ix.callbacks:
            cb.at -= seconds

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction_by_token(request.match_info["token"])
        body, files = await self._read_message_body(request)
        if self._expired(ix):  # what Discord answers once the 15 minutes are over
            self._record(request, 401)
            return error(401, 50027, "Invalid Webhook Token")
        if ix is None or request.match_info["app"] != str(APP_ID) or not ix.callbacks:
            self._record(request, 404)
            return error(404, 10015, "Unknown Webhook")
        problem = self._check_message(body, files)
        if problem is not None:
            self._record(request, problem.status)
            ix.rejected.append(Callback(-1, body, files, time.monotonic(), problem.status))
            await self._changed()
            return problem
        original = ix.payload.get("_original")
        replaces_loading = (
            ix.deferred
            and original is not None
            and not any(m.via == "followup" for m in ix.messages)
        )
        sent = self._sent(
            self._channel_of(ix),
            body,
            files,
            "followup",
            message_id=int(original["id"]) if replaces_loading and original else None,
            guild_id=self._guild_of(ix),
        )
        if replaces_loading and original:  # the deferred message keeps its flags (ephemeral)
            sent.message["flags"] = int(original.get("flags") or 0) & ~128
        ix.messages.append(sent)
        self._record(request, 200)
        await self._changed()
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(sent.message)
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction_by_token(request.match_info["token"])
        if self._expired(ix):
            self._record(request, 401)
            return error(401, 50027, "Invalid Webhook Token")
        if ix is None or not ix.callbacks:
            self._record(request, 404)
            return error(404, 10015, "Unknown Webhook")
        mid = request.match_info["mid"]
        original = ix.payload.get("_original")
        if request.method == "GET":
            self._record(request, 200)
            return json_response(original or {})
        if request.method == "DELETE":
            self._record(request, 204)
            return web.Response(status=204)
        if request.method != "PATCH":
            return error(405, 0, "405: Method Not Allowed")
        body, files = await self._read_message_body(request)
        problem = self._check_message(body, files, edit=True)
        if problem is not None:
            self._record(request, problem.status)
            ix.rejected.append(Callback(-2, body, files, time.monotonic(), problem.status))
            await self._changed()
            return problem
        message_id = int(original["id"]) if mid == "@original" and original else int(mid)
        sent = self._sent(
            self._channel_of(ix),
            body,
            files,
            "edit",
            message_id=message_id,
            guild_id=self._guild_of(ix),
        )
        ix.messages.append(sent)
        self._record(request, 200)
        await self._changed()
        return json_response(sent.message)

    async def _channel_message(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return error(401, 0, "401: Unauthorized")
        cid = int(request.match_info["cid"])
        body, files = await self._read_message_body(request)
        limit = self._take_rate_limit(cid)
        if limit is not None:
            self.rejected_messages.append((cid, 429, body))
            self._record(request, 429)
            await self._changed()
            retry = limit["retry_after"]
            headers = {
                "Via": "1.1 google",
                "Retry-After": f"{retry:.3f}",
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{retry:.3f}",
                "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                "X-RateLimit-Bucket": "channel-messages",
                "X-RateLimit-Scope": "global" if limit["global"] else "user",
            }
            if limit["global"]:
                headers["X-RateLimit-Global"] = "true"
            return json_response(
                {
                    "message": "You are being rate limited.",
                    "retry_after": retry,
                    "global": limit["global"],
                },
                429,
                headers,
            )
        gone = self._gone.get(cid)
        if gone == 404:
            self.rejected_messages.append((cid, 404, body))
            self._record(request, 404)
            await self._changed()
            return error(404, 10003, "Unknown Channel")
        if gone == 403:
            self.rejected_messages.append((cid, 403, body))
            self._record(request, 403)
            await self._changed()
            return error(403, 50001, "Missing Access")
        problem = self._check_message(body, files)
        if problem is not None:
            self.rejected_messages.append((cid, problem.status, body))
            self._record(request, problem.status)
            await self._changed()
            return problem
        sent = self._sent(cid, body, files, "channel")
        self.channel_messages.setdefault(cid, []).append(sent)
        self._record(request, 200)
        await self._changed()
        return json_response(sent.message, headers=self._ok_headers("channel-messages"))

    def _take_rate_limit(self, channel_id: int) -> dict[str, Any] | None:
        for limit in self._rate_limits:
            if limit["remaining"] > 0 and limit["channel"] in (None, channel_id):
                limit["remaining"] -= 1
                return limit
        return None

    # -- behaviour switches ------------------------------------------------------------------

    def rate_limit(
        self,
        count: int,
        *,
        retry_after: float = 0.05,
        is_global: bool = False,
        channel_id: int | None = None,
    ) -> None:
        """The next ``count`` channel messages (of one channel, or any) get a 429."""
        self._rate_limits.append(
            {
                "remaining": count,
                "retry_after": retry_after,
                "global": is_global,
                "channel": channel_id,
            }
        )

    def gone(self, channel_id: int, status: int = 404) -> None:
        """Posting in this channel answers 404 Unknown Channel or 403 Missing Access."""
        self._gone[channel_id] = status

    # -- gateway -----------------------------------------------------------------------------

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        async with self._ws_lock:
            if not ws.closed:
                await ws.send_str(json.dumps(payload))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        await self._send(
            ws,
            {
                "op": 10,
                "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                "s": None,
                "t": None,
            },
        )
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                op, d = data.get("op"), data.get("d")
                if op == 1:
                    self.heartbeats += 1
                    await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
                elif op == 2:
                    await self._identify(ws, d)
                elif op == 6:
                    await self._resume(ws, d)
                await self._changed()
        finally:
            if self._ws is ws:
                self._ws = None
                self.ready = False
            if ws.close_code is not None and id(ws) not in self._dropped:
                self.client_closes.append(ws.close_code)
            await self._changed()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        self.identifies.append(d)
        if d.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        if int(d.get("intents") or 0) & PRIVILEGED_INTENTS and not self.allow_privileged_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = _Session(secrets.token_hex(16))
        self._sessions[session.id] = session
        self.session = session
        self._ws = ws
        await self._dispatch_on(
            ws,
            session,
            "READY",
            {
                "v": 10,
                "user": self.bot_user(),
                "guilds": [],
                "session_id": session.id,
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(APP_ID), "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        self.ready = True

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        self.resumes.append(d)
        session = self._sessions.get(str(d.get("session_id")))
        if session is None or d.get("token") != self.token:
            await self._send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return
        self.session = session
        self._ws = ws
        last = int(d.get("seq") or 0)
        for event in session.history:
            if event["s"] > last:
                await self._send(ws, event)
        await self._dispatch_on(ws, session, "RESUMED", {})
        self.ready = True

    async def _dispatch_on(
        self, ws: web.WebSocketResponse | None, session: _Session, t: str, d: dict[str, Any]
    ) -> None:
        session.seq += 1
        event = {"op": 0, "t": t, "s": session.seq, "d": d}
        session.history.append(event)
        if ws is not None:
            await self._send(ws, event)

    async def dispatch(self, t: str, d: dict[str, Any]) -> None:
        """Send a DISPATCH to the connected bot (kept for replay when it is disconnected)."""
        if self.session is None:
            raise RuntimeError("no gateway session: wait_ready() first")
        await self._dispatch_on(self._ws, self.session, t, d)

    def forget_sessions(self) -> None:
        """Make the next RESUME fail (INVALID_SESSION ``d: false``): the bot must IDENTIFY."""
        self._sessions.clear()

    async def drop(self, code: int = 4000) -> None:
        """Cut the gateway connection from the server side (discord.py reconnects, RESUMEs)."""
        ws = self._ws
        if ws is None:
            raise RuntimeError("no gateway connection to drop")
        self.drops += 1
        self._dropped.add(id(ws))
        self._ws = None
        self.ready = False
        await ws.close(code=code, message=b"fake drop")
        await self._changed()

    # -- interactions ------------------------------------------------------------------------

    def command(self, name: str, *, guild: bool = True, ctype: int = 1) -> dict[str, Any]:
        """A synced command (guild first, then global): interactions must match the sync."""
        scopes = [GUILD_ID, None] if guild else [None, GUILD_ID]
        for scope in scopes:
            for c in self.synced.get(scope, []):
                if c["name"] == name and int(c.get("type") or 1) == ctype:
                    return c
        raise KeyError(f"command {name!r} (type {ctype}) was never synced")

    def _context(
        self,
        *,
        guild: bool,
        user_id: int,
        user_name: str,
        permissions: int,
        channel_id: int | None,
    ) -> dict[str, Any]:
        user = self.user(user_id, user_name)
        if guild:
            cid = channel_id or CHANNEL_ID
            return {
                "guild_id": str(GUILD_ID),
                "channel_id": str(cid),
                "channel": {
                    "id": str(cid),
                    "type": 0,
                    "guild_id": str(GUILD_ID),
                    "name": "general",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": None,
                    "last_message_id": None,
                    "rate_limit_per_user": 0,
                    "flags": 0,
                    "permissions": str(permissions),
                },
                "member": {
                    "user": user,
                    "roles": [],
                    "joined_at": "2025-01-01T00:00:00.000000+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "pending": False,
                    "nick": None,
                    "avatar": None,
                    "permissions": str(permissions),
                },
                "app_permissions": str(MEMBER_PERMISSIONS),
                "context": 0,
                "authorizing_integration_owners": {"0": str(GUILD_ID)},
                "guild_locale": "en-US",
            }
        cid = channel_id or DM_CHANNEL_ID
        return {
            "channel_id": str(cid),
            "channel": {"id": str(cid), "type": 1, "recipients": [user], "flags": 0},
            "user": user,
            "app_permissions": str(MEMBER_PERMISSIONS),
            "context": 1,
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
        }

    async def interact(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        guild: bool = True,
        user_id: int = USER_ID,
        user_name: str = "ama",
        permissions: int = MEMBER_PERMISSIONS,
        channel_id: int | None = None,
        message: dict[str, Any] | None = None,
        expect_ack: bool = True,
    ) -> FakeInteraction:
        """Dispatch an INTERACTION_CREATE and return its record (the 3 s window starts now)."""
        iid = self.snowflake()
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(APP_ID),
            "type": itype,
            "data": data,
            "token": f"tok{secrets.token_hex(20)}",
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.filesize_limit,
            **self._context(
                guild=guild,
                user_id=user_id,
                user_name=user_name,
                permissions=permissions,
                channel_id=channel_id,
            ),
        }
        if message is not None:
            payload["message"] = message
        ix = FakeInteraction(
            iid, payload["token"], payload, time.monotonic(), self.ack_window, expect_ack=expect_ack
        )
        self.interactions[iid] = ix
        await self.dispatch("INTERACTION_CREATE", payload)
        return ix

    def _options(
        self, command: dict[str, Any], options: dict[str, Any], focused: str | None
    ) -> list[dict[str, Any]]:
        declared = {o["name"]: o for o in command.get("options") or []}
        out = []
        for name, value in options.items():
            if name not in declared:
                raise KeyError(f"/{command['name']} has no option {name!r}")
            opt = {"name": name, "type": declared[name]["type"], "value": value}
            if name == focused:
                opt["focused"] = True
            out.append(opt)
        for name, o in declared.items():
            if o.get("required") and name not in options and focused is None:
                raise KeyError(f"/{command['name']} requires option {name!r}")
        return out

    async def slash(
        self, name: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> FakeInteraction:
        """A user runs ``/name`` with these options (checked against the synced command)."""
        command = self.command(name, guild=kw.get("guild", True))
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": self._options(command, options or {}, None),
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self.interact(2, data, **kw)

    async def autocomplete(
        self, name: str, options: dict[str, Any], focused: str, **kw: Any
    ) -> FakeInteraction:
        command = self.command(name, guild=kw.get("guild", True))
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": self._options(command, options, focused),
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self.interact(4, data, **kw)

    async def message_command(
        self, name: str, target: dict[str, Any], **kw: Any
    ) -> FakeInteraction:
        """A user picks a message context-menu command on ``target`` (a message object)."""
        command = self.command(name, guild=kw.get("guild", True), ctype=3)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: target}},
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self.interact(2, data, **kw)

    async def click(self, sent: Sent, custom_id: str, **kw: Any) -> FakeInteraction:
        """A user clicks a button of a message the bot sent."""
        return await self.interact(
            3, {"custom_id": custom_id, "component_type": 2}, message=sent.message, **kw
        )

    async def submit_modal(
        self, modal: dict[str, Any], values: dict[str, str], **kw: Any
    ) -> FakeInteraction:
        """A user fills the text inputs of a modal the bot opened (by label) and submits."""

        def fill(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for c in components:
                if c.get("type") == 1:
                    out.append({"type": 1, "components": fill(c.get("components") or [])})
                elif c.get("type") == 18:
                    out.append({"type": 18, "component": fill([c["component"]])[0]})
                elif c.get("type") == 4:
                    label = c.get("label", "")
                    out.append(
                        {"type": 4, "custom_id": c["custom_id"], "value": values.get(label, "")}
                    )
            return out

        data = {"custom_id": modal["custom_id"], "components": fill(modal["components"])}
        return await self.interact(5, data, **kw)

    # -- checks ------------------------------------------------------------------------------

    def all_sent(self) -> list[Sent]:
        out = [m for ix in self.interactions.values() for m in ix.messages]
        out += [m for ms in self.channel_messages.values() for m in ms]
        return out

    def unacknowledged(self) -> list[FakeInteraction]:
        """Interactions that never got an in-time first callback (but should have)."""
        return [
            ix
            for ix in self.interactions.values()
            if ix.expect_ack and (not ix.callbacks or ix.late())
        ]
