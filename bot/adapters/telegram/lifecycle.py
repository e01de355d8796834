"""Telegram lifecycle: python-telegram-bot's ``Application``, run inside the runner's loop.

Built once (:func:`build_application`: base URLs, the rate limiter, timeouts, no job queue,
and the adapter's recording update queue). Started by hand, never ``run_polling``:
``initialize`` (``getMe``), the command menu, ``start``, the adapter's own preparation
(its outlet opens: replies and requests left by an earlier run are taken up), then
``updater.start_polling`` or ``start_webhook``. A rejected token becomes
:class:`AdapterRefused` without the library's message (which quotes the token). Stopped in
order: fetching first (a poll loop backing off is cancelled), then dispatching, then the
library. The library's own errors (polling failures, 409 Conflict, handler errors) are
logged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import BotCommand
from telegram.error import Conflict, InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot.adapters.telegram.inbound import ALLOWED_UPDATES
from bot.adapters.telegram.ratelimit import RateLimiter
from bot.core.contract import AdapterRefused
from bot.core.errors import new_error_id
from bot.core.registry import Command
from bot.settings import TelegramSettings

log = logging.getLogger("nbhelp.telegram")

TG_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_MENU = 100  # commands Telegram shows in the menu
APP_STOP_S = 3.0  # Application.stop() after the handlers' grace period

TelegramApp = Application[Any, Any, Any, Any, Any, Any]


def build_application(
    settings: TelegramSettings,
    limiter: RateLimiter,
    *,
    concurrency: int,
    update_queue: asyncio.Queue[object] | None = None,
) -> TelegramApp:
    """The library's ``Application``: our base URLs, rate limiter and update queue, no job
    queue."""
    if settings.token is None or not settings.token.get_secret_value():
        raise ValueError("NBHELP_TELEGRAM__TOKEN is not set")
    builder = ApplicationBuilder()
    if update_queue is not None:
        builder = builder.update_queue(update_queue)
    return (
        builder.token(settings.token.get_secret_value())
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .rate_limiter(limiter)
        .concurrent_updates(concurrency)
        .job_queue(None)
        .connect_timeout(10)
        .read_timeout(15)
        .write_timeout(30)
        .media_write_timeout(60)
        .build()
    )


def menu(commands: Sequence[Command]) -> list[BotCommand]:
    """The command menu: the visible commands whose names Telegram accepts."""
    return [
        BotCommand(c.name, c.description[:256]) for c in commands if TG_COMMAND_NAME.match(c.name)
    ][:MAX_MENU]


class Lifecycle:
    """Starts and stops one ``Application``; counts 409 Conflicts; logs library errors."""

    def __init__(
        self,
        app: TelegramApp,
        settings: TelegramSettings,
        *,
        poll_timeout_s: float,
        updater_stop_s: float,
    ) -> None:
        self.app = app
        self.settings = settings
        self.poll_timeout_s = poll_timeout_s
        self.updater_stop_s = updater_stop_s
        self.username: str | None = None
        self.conflicts = 0  # 409s seen while polling
        self.webhook_secret: str | None = None
        self.webhook_set = False  # Telegram was told where to post (webhook mode)
        app.add_error_handler(self.on_library_error)

    @property
    def mode(self) -> str:
        return "webhook" if self.settings.webhook_url else "long polling"

    @property
    def fetching(self) -> bool:
        """Whether updates are being fetched (polling) or received (webhook)."""
        if self.settings.webhook_url:
            return self.webhook_set
        updater = self.app.updater
        return updater is not None and updater.running

    async def start(
        self,
        commands: Sequence[Command],
        before_fetching: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``getMe``, the command menu, the application, ``before_fetching``, then polling or
        the webhook."""
        try:
            await self.app.initialize()  # getMe
            self.username = self.app.bot.username
            await self._set_commands(commands)
            await self.app.start()
            if before_fetching is not None:
                await before_fetching()
            updater = self.app.updater
            assert updater is not None
            if self.settings.webhook_url:
                await self._start_webhook()
            else:
                await updater.start_polling(
                    timeout=int(self.poll_timeout_s),
                    allowed_updates=ALLOWED_UPDATES,
                    bootstrap_retries=3,
                    error_callback=self.on_polling_error,
                )
        except InvalidToken:
            # the library's message quotes the token: never let it reach a log or stderr
            with contextlib.suppress(Exception):
                await self.shutdown()
            raise AdapterRefused(
                "Telegram rejected the bot token (NBHELP_TELEGRAM__TOKEN)"
            ) from None
        except BaseException:
            with contextlib.suppress(Exception):
                await self.shutdown()
            raise

    def secret_for_webhook(self) -> str:
        """The secret Telegram must echo with every update (configured, or one per run)."""
        if self.webhook_secret is None:
            s = self.settings
            secret = s.webhook_secret.get_secret_value() if s.webhook_secret else ""
            if not secret:
                secret = secrets.token_urlsafe(32)  # still checked: Telegram echoes what we set
                log.info("telegram: no webhook secret configured; using a random one for this run")
            self.webhook_secret = secret
        return self.webhook_secret

    async def _start_webhook(self) -> None:
        """Tell Telegram where to post: the web server (bot/web) serves the route
        (:meth:`TelegramAdapter.web_routes`), so there is no second server."""
        await self.app.bot.set_webhook(
            self.settings.webhook_url or "",
            secret_token=self.secret_for_webhook(),
            allowed_updates=ALLOWED_UPDATES,
        )
        self.webhook_set = True

    async def _set_commands(self, commands: Sequence[Command]) -> None:
        try:
            await self.app.bot.set_my_commands(menu(commands))
        except TelegramError as exc:  # the menu is a convenience: never fatal
            log.warning("telegram: setMyCommands failed: %s", exc)

    # -- stopping, in order ----------------------------------------------------------------

    async def stop_fetching(self) -> None:
        """Stop polling (a webhook stops with the web server)."""
        self.webhook_set = False
        updater = self.app.updater
        if updater is None or not updater.running:
            return
        # A long poll ends at once; a poll loop in its back-off sleep (after 409s, 429s or
        # network errors, up to 30 s) does not: cancelling the stop cancels that sleep.
        try:
            await asyncio.wait_for(updater.stop(), self.updater_stop_s)
        except TimeoutError:
            log.info("telegram: polling was backing off; cancelled it")
        except Exception:
            log.exception("telegram: stopping the updater failed")

    def stop_dispatching(self) -> asyncio.Task[None] | None:
        """Begin ``Application.stop()``, which waits for every update it fetched."""
        return asyncio.create_task(self.app.stop()) if self.app.running else None

    async def finish(self, stopper: asyncio.Task[None] | None) -> None:
        """Wait briefly for :meth:`stop_dispatching`'s task, then shut the library down."""
        if stopper is not None:
            try:
                await asyncio.wait_for(stopper, APP_STOP_S)
            except Exception:
                log.exception("telegram: Application.stop() failed")
        await self.shutdown()

    async def shutdown(self) -> None:
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    # -- the library's errors --------------------------------------------------------------

    def on_polling_error(self, exc: TelegramError) -> None:
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

    async def on_library_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error_id = new_error_id()
        log.error(
            "error %s in telegram update processing: %r",
            error_id,
            context.error,
            exc_info=context.error,
        )
