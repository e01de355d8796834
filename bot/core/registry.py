"""The one command registry.

It is the single source for the console's ``/help``, Telegram's ``setMyCommands`` and
Discord's slash-command sync. Handlers are named by import path so that a command's heavy
imports (jupyter, matplotlib) load only when that command runs.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.core.context import Context
    from bot.core.models import Inbound, Reply

Handler = Callable[["Context", "Inbound"], Awaitable["Reply"]]
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # valid for Discord and Telegram alike


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    description: str
    type: Literal["string", "integer", "boolean"] = "string"
    required: bool = False
    choices: tuple[str, ...] = ()
    autocomplete: Literal["platforms", "needs", None] = None
    rest: bool = False  # takes the rest of the text (free words, code)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    description: str
    handler: str  # "package.module:function"
    options: tuple[Option, ...] = ()
    usage: str = ""  # e.g. "/alternatives [platform] [needs…]"
    examples: tuple[str, ...] = ()
    admin_in_groups: bool = False
    hidden: bool = False  # works, but not listed in menus (e.g. /start)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"bad command name {self.name!r}")
        if not 1 <= len(self.description) <= 100:
            raise ValueError(f"/{self.name}: description must be 1-100 characters")
        for opt in self.options:
            if not NAME_RE.match(opt.name) or not 1 <= len(opt.description) <= 100:
                raise ValueError(f"/{self.name}: bad option {opt.name!r}")

    def load(self) -> Handler:
        module, _, func = self.handler.partition(":")
        return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def add(self, command: Command, *aliases: str) -> None:
        if command.name in self.commands or command.name in self.aliases:
            raise ValueError(f"/{command.name} registered twice")
        self.commands[command.name] = command
        for alias in aliases:
            self.aliases[alias] = command.name

    def get(self, name: str) -> Command | None:
        return self.commands.get(self.aliases.get(name, name))

    def visible(self) -> list[Command]:
        return [c for c in self.commands.values() if not c.hidden]

    def names(self) -> list[str]:
        return [*self.commands, *self.aliases]

    def suggest(self, name: str) -> tuple[str, ...]:
        """Close command names for a did-you-mean, as ``/name``."""
        return tuple(
            f"/{c}" for c in difflib.get_close_matches(name, self.names(), n=2, cutoff=0.6)
        )


PLATFORM = Option("platform", "A notebook platform, e.g. colab", autocomplete="platforms")


def build_registry() -> Registry:
    r = Registry()
    r.add(
        Command(
            "start",
            "What this bot does and how to begin",
            "handlers.help:start",
            hidden=True,
        )
    )
    r.add(
        Command(
            "help",
            "List the commands, or explain one",
            "handlers.help:help",
            (Option("command", "A command name, e.g. status"),),
            usage="/help [command]",
        )
    )
    r.add(
        Command(
            "status",
            "Is a notebook platform down for everyone, or just for you?",
            "handlers.status:status",
            (
                PLATFORM,
                Option("chart", "A chart of the last 24 h or 7 days", choices=("24h", "7d")),
            ),
            usage="/status [platform] [chart [7d]]",
            examples=("/status", "/status colab", "/status colab chart 7d"),
        )
    )
    r.add(
        Command(
            "report",
            "Tell the bot a platform fails for you (counted with others' reports)",
            "handlers.report:report",
            (
                Option(
                    "platform", "The platform that fails", required=True, autocomplete="platforms"
                ),
                Option("what", "What you see, e.g. the error message", rest=True),
            ),
            usage="/report <platform> [what you see]",
            examples=("/report colab cannot connect to runtime",),
        )
    )
    r.add(
        Command(
            "subscribe",
            "Alert this chat when a platform goes down or recovers",
            "handlers.subscriptions:subscribe",
            (Option("platforms", "Platform ids, or all", autocomplete="platforms", rest=True),),
            usage="/subscribe [platforms|all]",
            examples=("/subscribe colab kaggle", "/subscribe all"),
            admin_in_groups=True,
        )
    )
    r.add(
        Command(
            "unsubscribe",
            "Stop alerts for some platforms, or all",
            "handlers.subscriptions:unsubscribe",
            (Option("platforms", "Platform ids, or all", autocomplete="platforms", rest=True),),
            usage="/unsubscribe [platforms|all]",
            admin_in_groups=True,
        )
    )
    r.add(
        Command(
            "subscriptions",
            "Which alerts this chat gets",
            "handlers.subscriptions:subscriptions",
            usage="/subscriptions",
        )
    )
    r.add(
        Command(
            "alternatives",
            "Where to run your notebook instead, ranked for your needs",
            "handlers.alternatives:alternatives",
            (
                PLATFORM,
                Option(
                    "needs", "Needs, e.g. gpu no-phone offline", autocomplete="needs", rest=True
                ),
            ),
            usage="/alternatives [platform] [needs…]",
            examples=("/alternatives colab gpu", "/alternatives offline", "/alternatives no-phone"),
        ),
        "alt",
    )
    r.add(
        Command(
            "run",
            "Run Python in your own sandboxed kernel; plots come back as images",
            "handlers.run:run",
            (
                Option(
                    "code",
                    "Python code (or reply /run to a message with code)",
                    required=True,
                    rest=True,
                ),
            ),
            usage="/run <code>",
            examples=("/run print(sum(range(10)))", "/run --info"),
        )
    )
    r.add(
        Command(
            "reset",
            "A fresh kernel: forget your variables and files",
            "handlers.run:reset",
            usage="/reset",
        )
    )
    r.add(
        Command(
            "platforms",
            "What each notebook platform offers for free",
            "handlers.platforms:platforms",
            (PLATFORM,),
            usage="/platforms [platform]",
        )
    )
    r.add(
        Command(
            "tips",
            "Search how-tos and explanations of error messages",
            "handlers.tips:tips",
            (Option("words", "Words or an error message to look up", required=True, rest=True),),
            usage="/tips <words or error text>",
            examples=("/tips mount drive", "/tips restriction in your location"),
        )
    )
    return r


REGISTRY = build_registry()
