"""Turning chat text into a command name and its argument text, and cleaning user text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.text import clean

MAX_ARGS = 20_000  # characters of argument text kept; more is cut and the user told
_CMD_RE = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|`|$)")


@dataclass(frozen=True, slots=True)
class Parsed:
    command: str  # lowercase, "" when the text is not a command
    args: str
    addressed_elsewhere: bool = False  # "/cmd@otherbot": not for us
    truncated: bool = False


__all__ = ["MAX_ARGS", "Parsed", "clean", "parse", "words"]


def parse(text: str, bot_username: str | None = None) -> Parsed:
    """Parse ``/cmd[@bot] args``. Leading whitespace is ignored."""
    text = clean(text).strip()
    m = _CMD_RE.match(text)
    if not m:
        return Parsed("", text[:MAX_ARGS], truncated=len(text) > MAX_ARGS)
    name, target = m.group(1).lower(), m.group(2)
    elsewhere = bool(target and bot_username and target.lower() != bot_username.lower().lstrip("@"))
    args = text[m.end() :].strip()
    truncated = len(args) > MAX_ARGS
    return Parsed(name, args[:MAX_ARGS], elsewhere, truncated)


def words(args: str) -> list[str]:
    """Lowercased argument words, punctuation at the edges stripped."""
    return [w.strip(".,;:!?\"'()[]{}").lower() for w in args.split() if w.strip(".,;:!?\"'()[]{}")]
