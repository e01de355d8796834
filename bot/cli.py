"""Entry point: ``python -m bot`` / ``nbhelp``.

nbhelp                  run the bot: chat adapters whose tokens are set, else the console
nbhelp console          the interactive console chat
nbhelp ask "/status"    one message through the core; prints the reply (attachments → --out)
nbhelp probe [platform] one sweep of the outage monitor; prints the verdicts
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
    probe = sub.add_parser("probe", help="check platforms now and print the verdicts")
    probe.add_argument("platform", nargs="?", help="one platform (default: all)")
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
    if args.cmd == "ask":
        settings, core = _start(console=True)
        print(asyncio.run(_ask(core, args.message, args.out or settings.out_dir)))
        return 0
    if args.cmd == "probe":
        _, core = _start(console=True)
        return asyncio.run(_probe(core, args.platform))
    settings, core = _start(console=args.cmd == "console")
    if args.cmd is None and (settings.telegram_token or settings.discord_token):
        return asyncio.run(_serve_chats(settings, core))
    if not sys.stdin.isatty():
        print(NO_TERMINAL, file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_console(settings, core))
    return 0


async def _ask(core: Core, message: str, out: Path) -> str:
    from bot.adapters.console import ConsoleAdapter

    try:
        return await ConsoleAdapter(core, out).ask(message)
    finally:
        await core.aclose()


async def _probe(core: Core, name: str | None) -> int:
    from knowledge.loader import KnowledgeError

    monitor = core.ctx.service("monitor")
    try:
        ids = None
        if name:
            platform = core.ctx.knowledge.resolve(name)
            if platform is None:
                close = ", ".join(core.ctx.knowledge.suggest(name)) or "none"
                print(f"unknown platform {name!r} (close: {close})", file=sys.stderr)
                return 2
            ids = [platform.id]
        await monitor.sweep(ids)
        for pid in ids or monitor.monitored:
            print("\n".join(monitor.verdict(pid).lines()))
        return 0
    except KnowledgeError as exc:
        print(f"nbhelp: {exc}", file=sys.stderr)
        return 2
    finally:
        await core.aclose()


async def _console(settings: Settings, core: Core) -> None:
    from bot.adapters.console import ConsoleAdapter
    from bot.runner import serve

    stop = asyncio.Event()
    adapter = ConsoleAdapter(core, settings.out_dir, color=sys.stdout.isatty(), on_exit=stop.set)
    try:
        await serve(core, [adapter], stop)
    finally:
        core.close()


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
    try:
        await serve(core, adapters)
    except Exception:
        log.exception("nbhelp stopped: a chat adapter or service failed")  # redacted log
        return 1
    finally:
        core.close()
    return 0
