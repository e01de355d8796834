"""Entry point: ``python -m bot`` / ``nbhelp``.

nbhelp                  run the bot: chat adapters whose tokens are set, else the console
nbhelp console          the interactive console chat
nbhelp ask "/status"    one message through the core; prints the reply (attachments → --out)
nbhelp probe [platform] one sweep of the outage monitor; prints the verdicts
nbhelp web              the status page, API, health and metrics on $PORT (plus chat adapters
                        whose tokens are set): the Procfile's `web` process
nbhelp config           the effective settings and where each came from (secrets redacted)

A bot with chat adapters serves the web side too unless NBHELP_WEB__ENABLED=false; the console
serves it only when NBHELP_WEB__ENABLED=true.

Exit status: 0 done; 1 the bot stopped by itself (see the log); 2 it could not start (bad
settings, database, knowledge data — one line on stderr names the key or path and the fix);
3 ``ask`` got no answer within its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot import logs
from bot.settings import (
    Origin,
    Settings,
    SettingsError,
    effective,
    load_settings,
    secret_values,
)

if TYPE_CHECKING:
    from bot.core.app import Core
    from bot.core.contract import ChatAdapter

log = logging.getLogger("nbhelp")

NO_TERMINAL = (
    "nbhelp: no chat platform is configured and there is no terminal for the console chat.\n"
    "Set NBHELP_TELEGRAM__TOKEN and/or NBHELP_DISCORD__TOKEN (see README), "
    'or run `python -m bot ask "/help"` for a one-shot answer.'
)


class StartError(Exception):
    """Cannot start: a one-line reason (exit status 2)."""


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
    sub.add_parser("web", help="serve the status page, API and metrics (and chat adapters)")
    config = sub.add_parser("config", help="print the effective settings and where each came from")
    config.add_argument(
        "--reference", action="store_true", help="every setting as Markdown (docs/settings.md)"
    )
    return p


def _settings() -> tuple[Settings, dict[tuple[str, ...], Origin]]:
    try:
        settings, origins = load_settings()
    except SettingsError as exc:
        lines = "\n".join(f"  {p}" for p in exc.problems)
        raise StartError(f"invalid settings:\n{lines}") from None
    return settings, dict(origins)


def _start(settings: Settings, *, chats: bool) -> Core:
    from bot.store import StoreError
    from bot.wiring import build_core
    from knowledge.loader import KnowledgeError

    level = settings.log_level or ("INFO" if chats else "WARNING")
    logs.setup(level, secret_values(settings), settings.log_file)
    try:
        return build_core(settings)
    except (KnowledgeError, StoreError) as exc:
        raise StartError(f"cannot start: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(_parser().parse_args(argv))
    except StartError as exc:
        print(f"nbhelp: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.cmd == "config" and args.reference:
        from bot.settings import reference

        print(reference(), end="")
        return 0
    settings, origins = _settings()
    if args.cmd == "config":
        return _config(settings, origins)
    if args.cmd == "ask":
        core = _start(settings, chats=False)
        out = args.out or settings.out_dir
        code, text = asyncio.run(_ask(core, args.message, out, settings.startup.ask_timeout_s))
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    if args.cmd == "probe":
        core = _start(settings, chats=False)
        return asyncio.run(_probe(core, args.platform))
    web = args.cmd == "web"
    chats = (args.cmd is None or web) and bool(settings.chat_platforms)
    if not chats and not web and not sys.stdin.isatty():
        print(NO_TERMINAL, file=sys.stderr)
        return 2
    core = _start(settings, chats=chats or web)
    _claim(core)
    if chats or web:
        serve_web = web or settings.web.enabled is not False
        return asyncio.run(_serve_chats(settings, core, web=serve_web))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_console(settings, core))
    return 0


def _claim(core: Core) -> None:
    from bot.store import StoreInUse

    try:
        core.ctx.store.claim()
    except StoreInUse as exc:
        core.close()
        raise StartError(str(exc)) from None


def _config(settings: Settings, origins: dict[tuple[str, ...], Origin]) -> int:
    rows = effective(settings, origins)
    width = max(len(k) for k, _, _ in rows)
    for key, value, origin in rows:
        print(f"{key:<{width}}  {value}  [{origin}]")
    return 0


async def _ask(core: Core, message: str, out: Path, timeout_s: float) -> tuple[int, str]:
    """Answer one message; never hangs: past ``timeout_s`` it gives up with exit status 3."""
    from bot.adapters.console import ConsoleAdapter
    from bot.runner import close_services

    try:
        text = await asyncio.wait_for(ConsoleAdapter(core, out).ask(message), timeout_s)
        return 0, text
    except TimeoutError:
        return 3, f"nbhelp: no answer within {timeout_s:g} s (NBHELP_STARTUP__ASK_TIMEOUT_S)"
    finally:
        await close_services(core)


async def _probe(core: Core, name: str | None) -> int:
    from bot.monitor.service import MonitorService
    from bot.runner import close_services

    monitor = core.ctx.service("monitor")
    assert isinstance(monitor, MonitorService)
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
            print("\n".join((await monitor.verdict(pid)).lines()))
        return 0
    finally:
        await close_services(core)


async def _console(settings: Settings, core: Core) -> None:
    from bot.adapters.console import ConsoleAdapter

    stop = asyncio.Event()
    adapter = ConsoleAdapter(core, settings.out_dir, color=sys.stdout.isatty(), on_exit=stop.set)
    await _run(settings, core, [adapter], web=settings.web.enabled is True, stop=stop)


async def _run(
    settings: Settings,
    core: Core,
    adapters: list[ChatAdapter],
    *,
    web: bool,
    stop: asyncio.Event | None = None,
) -> int:
    """The adapters and services until a stop, with the web side when ``web``."""
    from bot.runner import serve

    if not web:
        return (await serve(core, adapters, stop)).code
    from bot.web.serve import serve_web

    try:
        return await serve_web(core, settings.web, adapters, stop)
    except OSError as exc:  # the port is taken, or not ours to bind
        w = settings.web
        print(
            f"nbhelp: cannot serve the web side on {w.host}:{w.port} ({exc.strerror}); "
            "set NBHELP_WEB__PORT (or NBHELP_WEB__ENABLED=false)",
            file=sys.stderr,
        )
        return 2


async def _serve_chats(settings: Settings, core: Core, *, web: bool) -> int:
    """Run every chat adapter whose token is set (and the web side), in this one event loop."""
    adapters: list[ChatAdapter] = []
    if "telegram" in settings.chat_platforms:
        from bot.adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(core, settings.telegram))
    if "discord" in settings.chat_platforms:
        from bot.adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(core, settings.discord))
    parts = [a.name for a in adapters] + (["web"] if web else [])
    log.info("starting %s", ", ".join(parts))
    try:
        return await _run(settings, core, adapters, web=web)
    except Exception:
        log.exception("nbhelp stopped: a service failed")  # redacted log
        return 1
