"""The platform-neutral core: one inbound message in, one reply out.

Chat adapters record each request before acknowledging it (:meth:`Core.accept`), hand it over
(:meth:`Core.begin`: handled on core-owned tasks, the adapter's update handler returns at
once) and send the answers the core's chat scheduler gives them (:meth:`Core.open_outlet`;
see :mod:`bot.delivery`). The console, ``ask`` and tests call :meth:`Core.handle` or
:meth:`Core.handle_text` and get the reply back. Expected failures (:class:`UserError`)
become a short reply; a database held by another process becomes a short "busy, try again"
reply; anything else becomes an apology with an error id that is also in the log with the
traceback. The core never raises to an adapter.

Adapters register themselves with :meth:`attach` (the core delivers alerts through them) and
report chat events with :meth:`publish`; the wiring decides which services listen. The core
imports no adapter and no service wiring (``bot/wiring.py`` builds it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

from bot import metrics
from bot.core.alerts import deliver
from bot.core.context import Context
from bot.core.contract import ChatAdapter, ChatEvent, ChatRemoved, Outlet
from bot.core.errors import UserError, new_error_id
from bot.core.models import Inbound, Reply, code, codes, para
from bot.core.parse import MAX_ARGS, parse
from bot.core.ports import AlertOutbox
from bot.core.registry import Registry
from bot.delivery.dispatch import Dispatcher
from bot.delivery.intake import Hooks, Intake
from bot.delivery.models import Lane, Request, Ticket
from bot.store import StoreBusy

log = logging.getLogger("nbhelp.core")
E = TypeVar("E", bound=ChatEvent)
Listener = Callable[[Any], Awaitable[None]]


def user_error_reply(err: UserError) -> Reply:
    blocks = [para(err.message)]
    if err.suggestions:
        blocks.append(para("Did you mean: ", *codes(err.suggestions), "?"))
    return Reply.of(*blocks, tone="warn")


def apology(error_id: str) -> Reply:
    return Reply.of(
        para(
            "Sorry, something went wrong on my side. It is logged as error ",
            code(error_id),
            "; please try again in a moment.",
        ),
        tone="error",
    )


BUSY = (
    "My database is busy right now (another program is holding it). Please try again in a minute."
)


class Core:
    def __init__(self, ctx: Context, registry: Registry) -> None:
        self.ctx = ctx
        self.registry = registry
        self.adapters: list[ChatAdapter] = []
        self._listeners: dict[type, list[Listener]] = {}
        self._intake: Intake | None = None

    def use_commands(self, registry: Registry) -> None:
        """Serve these commands (the registry is also what handlers see as ``ctx.commands``)."""
        self.registry = registry
        self.ctx.commands = registry

    # -- adapters and chat events ----------------------------------------------------------

    def attach(self, adapter: ChatAdapter) -> None:
        """An adapter registers itself: alerts for its chats are delivered through it."""
        if all(a is not adapter for a in self.adapters):
            self.adapters.append(adapter)

    def on(self, kind: type[E], listener: Callable[[E], Awaitable[None]]) -> None:
        """Call ``listener`` for every published event of ``kind``."""
        self._listeners.setdefault(kind, []).append(cast(Listener, listener))

    async def publish(self, event: ChatEvent) -> None:
        """Tell the listeners; a failing listener is logged and never reaches the adapter."""
        for listener in self._listeners.get(type(event), []):
            try:
                await listener(event)
            except Exception:
                log.exception("error %s handling %s", new_error_id(), event)

    # -- requests from chat platforms: recorded, handled on core tasks, answered by outlets ---

    @property
    def intake(self) -> Intake:
        """Requests and answers (:mod:`bot.delivery.intake`), built on first use."""
        if self._intake is None:
            self._intake = Intake(
                self.ctx.store,
                self.ctx.settings.delivery,
                handle=self._serve,
                lane_of=self._lane_of,
                needs_admin=self._needs_admin,
                on_gone=self._chat_gone,
            )
        return self._intake

    async def accept(self, requests: Sequence[Request]) -> list[Ticket]:
        """Record requests before the platform is told they were received (durable; a
        redelivered one gets no ticket). Raises when the database cannot record them."""
        return await self.intake.accept(requests)

    def begin(self, ticket: Ticket) -> None:
        """Handle a recorded request on a core-owned task; its answer goes to the outbox and
        out through the adapter's outlet. Returns at once."""
        self.intake.begin(ticket)

    async def submit(self, request: Request) -> Ticket | None:
        """:meth:`accept` and :meth:`begin` one request."""
        tickets = await self.accept([request])
        for ticket in tickets:
            self.begin(ticket)
        return tickets[0] if tickets else None

    async def open_outlet(self, outlet: Outlet) -> None:
        """Send this adapter's replies through ``outlet`` from now on: what an earlier run left
        in the outbox goes out, unfinished requests of earlier runs are taken up again."""
        await self.intake.open(outlet)

    async def close_outlet(self, name: str, grace_s: float) -> None:
        """The adapter stops: its requests in flight get ``grace_s`` to finish and their
        answers to go out; the rest waits in the database for the next start."""
        if self._intake is not None:
            await self._intake.close(name, grace_s)

    def outlet(self, name: str) -> Dispatcher | None:
        """The chat scheduler of an open outlet (an adapter's alerts go through it)."""
        return None if self._intake is None else self._intake.dispatchers.get(name)

    def _lane_of(self, request: Request) -> Lane:
        parsed = parse(request.text, request.bot_username)
        command = self.registry.get(parsed.command) if parsed.command else None
        return "run" if command is not None and command.lane == "run" else "quick"

    def _needs_admin(self, request: Request) -> bool:
        parsed = parse(request.text, request.bot_username)
        command = self.registry.get(parsed.command) if parsed.command else None
        return command is not None and command.admin_in_groups

    async def _serve(self, request: Request, hooks: Hooks) -> Reply | None:
        return await self.handle_text(
            request.text,
            platform=request.platform,
            chat_id=request.chat_id,
            user_id=request.user_id,
            display_name=request.display_name,
            is_admin=hooks.is_admin,
            is_private=request.is_private,
            replied_text=request.replied_text,
            bot_username=request.bot_username,
            notify=hooks.notify,
            on_started=hooks.on_started,
        )

    async def _chat_gone(self, adapter: str, chat_id: str, reason: str) -> None:
        await self.publish(ChatRemoved(adapter, chat_id, reason))

    # -- messages ---------------------------------------------------------------------------

    async def handle_text(
        self,
        text: str,
        *,
        platform: str,
        chat_id: str,
        user_id: str,
        display_name: str = "",
        is_admin: bool = False,
        is_private: bool = True,
        replied_text: str | None = None,
        bot_username: str | None = None,
        notify: Callable[[str], Awaitable[None]] | None = None,
        patient: bool = False,
        on_started: Callable[[], Awaitable[None]] | None = None,
    ) -> Reply | None:
        """Parse chat text and handle it. ``None`` when the text is addressed to another bot."""
        parsed = parse(text, bot_username)
        if parsed.addressed_elsewhere:
            return None
        msg = Inbound(
            platform=platform,
            chat_id=chat_id,
            user_id=user_id,
            display_name=display_name,
            command=parsed.command,
            args=parsed.args,
            is_admin=is_admin or is_private,
            is_private=is_private,
            replied_text=replied_text,
            notify=notify,
            patient=patient,
            on_started=on_started,
        )
        reply = await self.handle(msg)
        if parsed.truncated:
            note = para(f"(Your message was cut to its first {MAX_ARGS:,} characters.)")
            reply = dataclasses.replace(reply, blocks=(*reply.blocks, note))
        return reply

    async def handle(self, msg: Inbound) -> Reply:
        started = time.perf_counter()
        failed = False
        try:
            reply = await self._dispatch(msg)
        except UserError as err:
            reply = user_error_reply(err)
        except StoreBusy as exc:
            log.warning("/%s from %s:%s: %s", msg.command, msg.platform, msg.chat_id, exc)
            reply = Reply.of(para(BUSY), tone="warn")
        except Exception:
            error_id = new_error_id()
            log.exception(
                "error %s handling /%s from %s:%s", error_id, msg.command, msg.platform, msg.chat_id
            )
            reply = apology(error_id)
            failed = True
        elapsed = time.perf_counter() - started
        known = msg.command if self.registry.get(msg.command) is not None else "unknown"
        metrics.observe_command(msg.platform, known or "-", elapsed, ok=not failed)
        log.info(
            "handled /%s for %s:%s in %.0f ms",
            msg.command or "-",
            msg.platform,
            msg.chat_id,
            elapsed * 1000,
        )
        return reply

    async def _dispatch(self, msg: Inbound) -> Reply:
        if not msg.command:
            raise UserError(
                "Send a command, for example /status colab or /alternatives gpu. /help lists them all."
            )
        command = self.registry.get(msg.command)
        if command is None:
            raise UserError(
                f"I don't know the command /{msg.command[:40]}. /help lists what I can do.",
                suggestions=self.registry.suggest(msg.command),
            )
        if command.admin_in_groups and not msg.is_private and not msg.is_admin:
            raise UserError(f"Only an admin of this chat can use /{command.name} here.")
        return await command.handler(self.ctx, msg)

    # -- running ----------------------------------------------------------------------------

    def delivery(self, adapter: ChatAdapter) -> Coroutine[Any, Any, None] | None:
        """What the runner keeps alive for a started adapter: its alert delivery (None when
        there is no outage monitor)."""
        outbox = cast("AlertOutbox | None", self.ctx.service("monitor"))
        return None if outbox is None else deliver(outbox, adapter)

    async def aclose(self) -> None:
        """Close the services built so far, then the store."""
        if self._intake is not None:
            await self._intake.aclose()
        for service in list(self.ctx.services.values()):
            closer = getattr(service, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    log.exception("closing %s failed", type(service).__name__)
        await asyncio.to_thread(self.ctx.store.close)

    def close(self) -> None:
        self.ctx.store.close()
