"""Entry point: ``python -m bot`` / ``nbhelp``.

nbhelp                 run the bot: chat adapters whose tokens are set, else the console
nbhelp console         the interactive console chat
nbhelp ask "/status"   one message through the core; prints the reply (attachments → --out)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot import logs
from bot.settings import Settings, secret_values

if TYPE_CHECKING:
    from bot.core.app import Core

log = logging.getLogger("nbhelp")

NO_TERMINAL = (
    "nbhelp: no chat platform is configured and there is no terminal for the console chat.\n"
    "Set NBHELP_TELEGRAM_TOKEN and/or NBHELP_DISCORD_TOKEN (see README), "
    'or run `python -m bot ask "/help"` for a one-shot answer.'
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbhelp", description="Help when cloud notebooks fail.")
    sub = p.add_subparsers(dest="cmd")
    ask = sub.add_parser("ask", help="answer one message and exit")
    ask.add_argument("message", help='e.g. "/status colab"')
    ask.add_argument(
        "--out", type=Path, help="folder for images and files (default NBHELP_OUT_DIR)"
    )
    sub.add_parser("console", help="interactive console chat")
    return p


def _start(console: bool) -> tuple[Settings, Core]:
    from bot.core.app import Core
    from knowledge.loader import KnowledgeError

    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(f"nbhelp: invalid settings: {exc}") from None
    chats = not console and bool(settings.telegram_token or settings.discord_token)
    level = settings.log_level or ("INFO" if chats else "WARNING")
    logs.setup(level, secret_values(settings), settings.log_file)
    try:
        core = Core.create(settings)
    except KnowledgeError as exc:
        raise SystemExit(f"nbhelp: cannot start: {exc}") from None
    return settings, core


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bot.adapters.console import ConsoleAdapter

    if args.cmd == "ask":
        settings, core = _start(console=True)
        adapter = ConsoleAdapter(core, args.out or settings.out_dir)
        print(asyncio.run(adapter.ask(args.message)))
        return 0
    settings, core = _start(console=args.cmd == "console")
    if args.cmd is None and (settings.telegram_token or settings.discord_token):
        return asyncio.run(_serve_chats(settings, core))
    if not sys.stdin.isatty():
        print(NO_TERMINAL, file=sys.stderr)
        return 2
    adapter = ConsoleAdapter(core, settings.out_dir, color=sys.stdout.isatty())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(adapter.run())
    return 0


async def _serve_chats(settings: Settings, core: Core) -> int:
    """Run every chat adapter whose token is set, in this one event loop."""
    from bot.adapters.base import Adapter
    from bot.runner import serve

    adapters: list[Adapter] = []
    if settings.telegram_token:
        from bot.adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(core, settings))
    if settings.discord_token:
        from bot.adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(core, settings))
    log.info("starting %s", ", ".join(a.name for a in adapters))
    await serve(core, adapters)
    return 0
