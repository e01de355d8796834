"""The one command registry.

It is the single source for the console's ``/help``, Telegram's ``setMyCommands`` and
Discord's slash-command sync. Each command holds its handler by reference; the list of
commands lives in ``handlers/__init__.py`` (``handlers.COMMANDS``), so the import lines show
which handler serves which command. Handlers keep their heavy imports (jupyter, matplotlib)
inside the services, which are built on first use.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from bot.core.context import Context
from bot.core.models import Inbound, Reply
from bot.text import did_you_mean

Handler = Callable[[Context, Inbound], Awaitable[Reply]]
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
    handler: Handler
    options: tuple[Option, ...] = ()
    usage: str = ""  # e.g. "/alternatives [platform] [needs…]"
    examples: tuple[str, ...] = ()
    admin_in_groups: bool = False
    hidden: bool = False  # works, but not listed in menus (e.g. /start)
    aliases: tuple[str, ...] = ()
    # "run": long work that queues for a shared resource (/run): handed to its own queues,
    # answered after quick commands, shown in the chat's progress message, and told "the bot
    # restarted" instead of being repeated when a restart cut it short after it began.
    lane: Literal["quick", "run"] = "quick"

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"bad command name {self.name!r}")
        if not 1 <= len(self.description) <= 100:
            raise ValueError(f"/{self.name}: description must be 1-100 characters")
        for opt in self.options:
            if not NAME_RE.match(opt.name) or not 1 <= len(opt.description) <= 100:
                raise ValueError(f"/{self.name}: bad option {opt.name!r}")


@dataclass(slots=True)
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, commands: Iterable[Command]) -> Registry:
        r = cls()
        for c in commands:
            r.add(c)
        return r

    def add(self, command: Command) -> None:
        if command.name in self.commands or command.name in self.aliases:
            raise ValueError(f"/{command.name} registered twice")
        self.commands[command.name] = command
        for alias in command.aliases:
            self.aliases[alias] = command.name

    def get(self, name: str) -> Command | None:
        return self.commands.get(self.aliases.get(name, name))

    def visible(self) -> list[Command]:
        return [c for c in self.commands.values() if not c.hidden]

    def names(self) -> list[str]:
        return [*self.commands, *self.aliases]

    def suggest(self, name: str) -> tuple[str, ...]:
        """Close command names for a did-you-mean, as ``/name``."""
        return tuple(f"/{c}" for c in did_you_mean(name, self.names(), n=2))


PLATFORM = Option("platform", "A notebook platform, e.g. colab", autocomplete="platforms")
