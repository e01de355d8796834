"""Small text helpers every layer shares, each in one implementation: cleaning untrusted text,
durations in words, and did-you-mean suggestions.

No imports from the rest of the bot: renderers, kernels, the monitor and the settings all use it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks (payload included)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x9d[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # 8-bit OSC
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)
# C0 and C1 controls except tab and newline; \r is handled by ``keep_cr``.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Invisible characters that reorder or hide text: bidi embeddings, overrides and isolates,
# directional marks, zero-width space, word joiner and invisible operators, the BOM.
# (Zero-width joiners stay: emoji sequences and some scripts need them.)
_INVISIBLE = re.compile(
    "[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def clean(text: str, *, keep_cr: bool = False) -> str:
    """Chat-safe text from an untrusted source (a user, a kernel, a status feed).

    Valid UTF-8 (lone surrogates become ``?``); terminal escape sequences removed whole,
    OSC payloads such as a hyperlink's target included; NUL and other control characters
    removed (tab and newline kept, carriage return only with ``keep_cr``); bidi overrides and
    other invisible characters removed, so text cannot appear in another order than it is.
    """
    if not text:
        return ""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _ESCAPES.sub("", text)
    text = _CONTROL.sub("", text)
    if not keep_cr:
        text = text.replace("\r", "")
    return _INVISIBLE.sub("", text)


def duration(seconds: float) -> str:
    """A duration in words, short: ``45 s``, ``2.5 min``, ``10 min``, ``3 h 20 min``, ``2 d 4 h``."""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{round(s, 1):g} s" if s < 10 else f"{round(s)} s"
    if s < 3600:
        minutes = s / 60
        return f"{round(minutes, 1):g} min" if minutes < 10 else f"{round(minutes)} min"
    minutes_total = int(s // 60)
    if s < 48 * 3600:
        h, m = divmod(minutes_total, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(minutes_total // 60, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def ago(seconds: float) -> str:
    """How long ago, in words: ``just now``, ``5 min ago``."""
    return (
        "just now"
        if seconds < 5
        else f"{duration(seconds if seconds < 60 else (seconds // 60) * 60)} ago"
    )


def did_you_mean(
    word: str, vocabulary: Iterable[str], *, n: int = 3, cutoff: float = 0.6
) -> list[str]:
    """Up to ``n`` close matches of ``word`` in ``vocabulary``, best first, no repeats."""
    vocab = list(dict.fromkeys(vocabulary))
    return list(dict.fromkeys(difflib.get_close_matches(word, vocab, n=n, cutoff=cutoff)))
