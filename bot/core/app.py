"""The platform-neutral core: one inbound message in, one reply out.

Every adapter calls :meth:`Core.handle` (or :meth:`Core.handle_text`). Expected failures
(:class:`UserError`) become a short reply; anything else becomes an apology with an error id
that is also in the log with the traceback. The core never raises to an adapter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from bot.core.context import Context
from bot.core.errors import UserError, new_error_id
from bot.core.models import Inbound, Reply, code, codes, para
from bot.core.parse import MAX_ARGS, parse
from bot.core.registry import REGISTRY, Registry
from bot.settings import Settings
from bot.store import Store
from knowledge.loader import load

if TYPE_CHECKING:
    from bot.adapters.base import Adapter

log = logging.getLogger("nbhelp.core")


def user_error_reply(err: UserError) -> Reply:
    blocks = [para(err.message)]
    if err.suggestions:
        blocks.append(para("Did you mean: ", *codes(err.suggestions), "?"))
    return Reply.of(*blocks, tone="warn")


class Core:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @classmethod
    def create(cls, settings: Settings, registry: Registry = REGISTRY) -> Core:
        """Load and validate the knowledge base, open and migrate the store."""
        kb = load(settings.config)
        store = Store(settings.db)
        store.migrate()
        from bot.services import FACTORIES

        ctx = Context(settings=settings, store=store, knowledge=kb, registry=registry)
        ctx.factories.update(FACTORIES)
        return cls(ctx)

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
        except Exception:
            error_id = new_error_id()
            log.exception(
                "error %s handling /%s from %s:%s", error_id, msg.command, msg.platform, msg.chat_id
            )
            reply = Reply.of(
                para(
                    "Sorry, something went wrong on my side. It is logged as error ",
                    code(error_id),
                    "; please try again in a moment.",
                ),
                tone="error",
            )
        log.info(
            "handled /%s for %s:%s in %.0f ms",
            msg.command or "-",
            msg.platform,
            msg.chat_id,
            (time.perf_counter() - started) * 1000,
        )
        return reply

    async def _dispatch(self, msg: Inbound) -> Reply:
        registry = self.ctx.registry
        if not msg.command:
            raise UserError(
                "Send a command, for example /status colab or /alternatives gpu. /help lists them all."
            )
        command = registry.get(msg.command)
        if command is None:
            raise UserError(
                f"I don't know the command /{msg.command[:40]}. /help lists what I can do.",
                suggestions=registry.suggest(msg.command),
            )
        if command.admin_in_groups and not msg.is_private and not msg.is_admin:
            raise UserError(f"Only an admin of this chat can use /{command.name} here.")
        handler = command.load()
        return await handler(self.ctx, msg)

    def background_tasks(
        self, adapters: Sequence[Adapter], stop: asyncio.Event
    ) -> list[Coroutine[Any, Any, None]]:
        """Coroutines the runner keeps alive while the bot runs: alert delivery per adapter."""
        from bot.core.alerts import deliver

        monitor = self.ctx.service("monitor")
        if monitor is None:
            return []
        return [deliver(monitor, adapter) for adapter in adapters]

    async def aclose(self) -> None:
        """Close the services built so far, then the store."""
        for service in self.ctx.services.values():
            closer = getattr(service, "aclose", None)
            if closer is not None:
                await closer()
        self.ctx.store.close()

    def close(self) -> None:
        self.ctx.store.close()
