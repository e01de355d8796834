"""The platform-neutral core: one inbound message in, one reply out.

Every adapter calls :meth:`Core.handle` (or :meth:`Core.handle_text`). Expected failures
(:class:`UserError`) become a short reply; a database held by another process becomes a short
"busy, try again" reply; anything else becomes an apology with an error id that is also in the
log with the traceback. The core never raises to an adapter.

Adapters register themselves with :meth:`attach` (the core delivers alerts through them) and
report chat events with :meth:`publish`; the wiring decides which services listen. The core
imports no adapter and no service wiring (``bot/wiring.py`` builds it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from bot.core.alerts import deliver
from bot.core.context import Context
from bot.core.contract import ChatAdapter, ChatEvent
from bot.core.errors import UserError, new_error_id
from bot.core.models import Inbound, Reply, code, codes, para
from bot.core.parse import MAX_ARGS, parse
from bot.core.ports import AlertOutbox
from bot.core.registry import Registry
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
        )
        reply = await self.handle(msg)
        if parsed.truncated:
            note = para(f"(Your message was cut to its first {MAX_ARGS:,} characters.)")
            reply = dataclasses.replace(reply, blocks=(*reply.blocks, note))
        return reply

    async def handle(self, msg: Inbound) -> Reply:
        started = time.perf_counter()
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
        log.info(
            "handled /%s for %s:%s in %.0f ms",
            msg.command or "-",
            msg.platform,
            msg.chat_id,
            (time.perf_counter() - started) * 1000,
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
