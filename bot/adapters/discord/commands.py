"""Slash commands generated from the core's command registry.

Each visible registry command becomes an ``app_commands.Command`` whose callback has a
signature built from the command's options (``inspect.Signature``), so discord.py's own
machinery produces the sync payload (types, descriptions, choices, autocomplete flags,
``default_member_permissions``) and parses the options of every interaction.

* a ``rest`` option is a plain string option (Discord has no "rest of the line");
* ``/run``'s code option is optional on Discord even if the registry requires it: ``/run``
  without code opens a modal for multi-line code;
* ``admin_in_groups`` commands default to the Manage Server permission (Discord hides them
  from other members; the adapter still checks the permission of every interaction);
* hidden commands (``/start``) and aliases are not synced.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import discord
from discord import app_commands

from bot.core.registry import Command, Option, Registry
from knowledge.loader import KnowledgeBase, normalize
from knowledge.ranking import NEEDS

log = logging.getLogger("nbhelp.discord")

RUN_COMMAND = "run"
RUN_CONTEXT_MENU = "Run code"
MAX_OPTIONS = 25
MAX_CHOICES = 25
CHOICE_LIMIT = 100  # characters of a choice's name and value

_TYPES: dict[str, type] = {"string": str, "integer": int, "boolean": bool}

Completer = Callable[
    [discord.Interaction, str], Coroutine[Any, Any, list[app_commands.Choice[str]]]
]


class Handlers(Protocol):
    """What the generated commands call back into (the adapter)."""

    async def on_command(
        self, interaction: discord.Interaction, command: Command, values: dict[str, Any]
    ) -> None: ...

    async def on_run_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None: ...

    def knowledge(self) -> KnowledgeBase: ...


def code_option(command: Command) -> Option | None:
    """The option that carries /run's code: the rest option, else one named ``code``."""
    for opt in command.options:
        if opt.rest and opt.type == "string":
            return opt
    return next((o for o in command.options if o.name == "code"), None)


def join_args(command: Command, values: dict[str, Any]) -> str:
    """Option values as the core's argument text, in the registry's option order.

    ``/alternatives platform:colab needs:gpu`` → ``"colab gpu"``.
    """
    parts: list[str] = []
    for opt in command.options:
        value = values.get(opt.name)
        if value is None:
            continue
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value).strip()
        if text:
            parts.append(text)
    return " ".join(parts)


# --- autocomplete -------------------------------------------------------------------------


def _choice(name: str, value: str) -> app_commands.Choice[str]:
    return app_commands.Choice(name=name[:CHOICE_LIMIT], value=value[:CHOICE_LIMIT])


def _split_last(current: str) -> tuple[list[str], str]:
    """Words already complete, and the word being typed (empty after a space)."""
    words = current.split()
    if current and not current[-1].isspace() and words:
        return words[:-1], words[-1]
    return words, ""


def platform_choices(
    kb: KnowledgeBase, current: str, *, several: bool = False
) -> list[app_commands.Choice[str]]:
    """Platform ids matching what the user typed so far (id, name or alias); alive first.

    ``several`` (a free-words option such as /subscribe's): complete the last word only.
    """
    done, typed = _split_last(current) if several else ([], current)
    prefix = " ".join(done)
    cur = normalize(typed)
    scored: list[tuple[int, int, app_commands.Choice[str]]] = []
    for order, p in enumerate(kb.platforms.values()):
        if p.id in done:
            continue
        hay = [p.id, normalize(p.name), *(normalize(a) for a in p.aliases)]
        if cur and not any(cur in h for h in hay):
            continue
        prefix_rank = 0 if not cur or any(h.startswith(cur) for h in hay) else 1
        rank = prefix_rank + (0 if p.alive else 2)
        value = f"{prefix} {p.id}".strip()
        if len(value) > CHOICE_LIMIT:
            continue
        label = (f"{prefix} " if prefix else "") + f"{p.name} ({p.id})"
        label += "" if p.alive else " — retired"
        scored.append((rank, order, _choice(label, value)))
    scored.sort(key=lambda t: (t[0], t[1]))
    out = [c for _, _, c in scored[:MAX_CHOICES]]
    if not out and several and current.strip():
        out.append(_choice(current.strip(), current.strip()))  # keep what the user typed
    return out


def needs_choices(current: str) -> list[app_commands.Choice[str]]:
    """Needs vocabulary for a free-words option: completes the last word, keeps the others."""
    text = current.lower()
    done, partial = _split_last(text)
    prefix = " ".join(done)
    out: list[app_commands.Choice[str]] = []
    starts = [n for n in NEEDS if n.startswith(partial)]
    contains = [n for n in NEEDS if partial and n not in starts and partial in NEEDS[n].label]
    for name in [*starts, *contains]:
        if name in done:
            continue
        value = f"{prefix} {name}".strip()
        if len(value) > CHOICE_LIMIT:
            continue
        out.append(_choice(f"{value} — {NEEDS[name].label}", value))
    if not out and text.strip():
        out.append(_choice(text.strip(), text.strip()))  # keep what the user typed
    return out[:MAX_CHOICES]


# --- building the commands ----------------------------------------------------------------


def _choices(opt: Option) -> list[app_commands.Choice[Any]]:
    out: list[app_commands.Choice[Any]] = []
    for c in opt.choices[:MAX_CHOICES]:
        value: Any = int(c) if opt.type == "integer" else c
        out.append(app_commands.Choice(name=c[:CHOICE_LIMIT], value=value))
    if len(opt.choices) > MAX_CHOICES:
        log.warning("option %s has more than %d choices; extra ones dropped", opt.name, MAX_CHOICES)
    return out


def slash_command(command: Command, handlers: Handlers) -> app_commands.Command[Any, ..., None]:
    """One registry command as a discord.py slash command."""

    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        await handlers.on_command(interaction, command, values)

    async def complete_platforms(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return platform_choices(handlers.knowledge(), current)

    async def complete_several_platforms(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return platform_choices(handlers.knowledge(), current, several=True)

    async def complete_needs(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return needs_choices(current)

    completers: dict[str, Completer] = {
        "platforms": complete_platforms,
        "needs": complete_needs,
    }
    code = code_option(command) if command.name == RUN_COMMAND else None
    params = [
        inspect.Parameter(
            "interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction
        )
    ]
    descriptions: dict[str, str] = {}
    choices: dict[str, list[app_commands.Choice[Any]]] = {}
    autocomplete: dict[str, Completer] = {}
    if len(command.options) > MAX_OPTIONS:
        log.warning("/%s has more than %d options; extra ones dropped", command.name, MAX_OPTIONS)
    for opt in command.options[:MAX_OPTIONS]:
        kind = _TYPES[opt.type]
        required = opt.required and opt is not code
        params.append(
            inspect.Parameter(
                opt.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=kind if required else kind | None,
                default=inspect.Parameter.empty if required else None,
            )
        )
        description = opt.description
        if opt is code:
            suffix = " (leave empty for a multi-line editor)"
            if len(description) + len(suffix) <= 100:
                description += suffix
        descriptions[opt.name] = description
        if opt.choices:
            choices[opt.name] = _choices(opt)
        elif opt.autocomplete == "platforms" and opt.rest and opt.type == "string":
            autocomplete[opt.name] = complete_several_platforms
        elif opt.autocomplete in completers and opt.type == "string":
            autocomplete[opt.name] = completers[opt.autocomplete]
    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # discord.py reads it for the options
    if descriptions:
        app_commands.describe(**descriptions)(callback)
    if choices:
        app_commands.choices(**choices)(callback)
    if autocomplete:
        app_commands.autocomplete(**autocomplete)(callback)
    if command.admin_in_groups:
        app_commands.default_permissions(manage_guild=True)(callback)
    return app_commands.Command(
        name=command.name, description=command.description, callback=callback
    )


def run_context_menu(handlers: Handlers) -> app_commands.ContextMenu:
    """The message context-menu command "Run code": runs the code in any message."""

    async def run_message(interaction: discord.Interaction, message: discord.Message) -> None:
        await handlers.on_run_message(interaction, message)

    return app_commands.ContextMenu(name=RUN_CONTEXT_MENU, callback=run_message)


def add_commands(
    tree: app_commands.CommandTree[Any], registry: Registry, handlers: Handlers
) -> list[str]:
    """Put every visible registry command (and "Run code" when /run exists) on the tree."""
    names: list[str] = []
    for command in registry.visible():
        tree.add_command(slash_command(command, handlers))
        names.append(command.name)
    if registry.get(RUN_COMMAND) is not None:
        tree.add_command(run_context_menu(handlers))
        names.append(RUN_CONTEXT_MENU)
    return names
