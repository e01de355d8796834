"""Recognise a pasted error (or a few words) and find the knowledge entry that explains it.

Pure functions over a loaded :class:`~knowledge.loader.KnowledgeBase`: nothing is stored and
nothing leaves the process. Evidence, strongest first:

1. ``id``: the text is an entry id (``/tips kernel-died``);
2. ``wording``: known wording of an entry occurs in the text; the entry whose patterns cover
   the most characters of the text wins, so "CUDA out of memory" beats a shared "GPU";
3. ``exception``: the paste names an exception class that exactly one entry explains and
   that is not a Python builtin (``ResourceExhaustedError`` yes, ``RuntimeError`` never);
4. ``words``: BM25 over titles, keywords, wording and steps, for short free-text questions.

An error paste that only shares words with an entry is never answered with confidence: the
entry comes back as "might be related" instead. Precision over recall: a wrong answer costs
a student more than an honest "don't know".
"""

from __future__ import annotations

import builtins
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from knowledge.loader import KnowledgeBase
from knowledge.schema import KnownMessage, Tip, normalize_text

Entry = KnownMessage | Tip
Reason = Literal["id", "wording", "exception", "words"]

LIKELY = 0.55
"""Below this a hit is only ever shown as "might be related"."""
SURE = 0.8
"""Known wording (or an id) gives at least this."""

_GAP = r"[^\n]{0,160}?"  # what '*' in a pattern stands for
_EXC_LINE = re.compile(
    r"^\s*(?:[\w.]*\.)?([A-Z_]\w*(?:Error|Exception|Exhausted|Interrupt|Warning|Exit))\b"
    r"\s*(?::|\(|$)(.*)$"
)
_EXC_ANY = re.compile(r"\b(?:[\w]+\.)*([A-Z_]\w*(?:Error|Exception|Exhausted))\b")
_TRACEBACK = re.compile(
    r"traceback \(most recent call last\)|^\s*-+>\s*\d+|file \".*\", line \d+", re.I | re.M
)
_TOKEN = re.compile(r"[a-z0-9]+")
# Builtin exceptions say too little on their own (RuntimeError, OSError, ValueError …),
# except these two, which always mean the same thing.
_SPECIFIC_BUILTINS = frozenset({"FileNotFoundError", "ModuleNotFoundError"})
_BUILTIN_EXCEPTIONS = (
    frozenset(
        name
        for name, obj in vars(builtins).items()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    )
    - _SPECIFIC_BUILTINS
)
_IPYTHON_HEADER = re.compile(
    r"^\s*([A-Z_]\w*(?:Error|Exception))\s+Traceback \(most recent call last\)"
)
_STOP_WORDS = """a an and are as at be been but by can could did do does doing done for from get gets
    got had has have having he her his how i if in into is it its it's just me my no not now
    of on or our out please said say says she so some than that the their them then there
    these they this those to too up us was we were what when where which while who why will
    with would you your yours am also any all any can't cant dont don't im i'm ive i've keep
    keeps still want wanted trying tried try use using used help error errors issue problem
    get getting shows showing show message appears appear happen happens happened"""
_STOP = frozenset(_STOP_WORDS.split())
_PLATFORM_HINTS = (
    ("colab", re.compile(r"colab|/content/|localhost:8080/#|google\.colab", re.I)),
    ("kaggle", re.compile(r"kaggle", re.I)),
    ("binder", re.compile(r"binder", re.I)),
    ("sagemaker-studio-lab", re.compile(r"studio ?lab|sagemaker", re.I)),
)


@dataclass(frozen=True)
class Hit:
    """One entry that may explain the text, and why."""

    entry: Entry
    reason: Reason
    score: float  # characters of known wording, or the BM25 score
    confidence: float  # 0..1; >= LIKELY is an answer, >= SURE is known wording
    matched: tuple[str, ...] = ()  # the patterns, exception or words that matched

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def kind(self) -> Literal["message", "tip"]:
        return "message" if isinstance(self.entry, KnownMessage) else "tip"


@dataclass(frozen=True)
class Result:
    """What the matcher made of a text: the best hits and what kind of text it was."""

    text: str
    is_paste: bool  # looks like pasted output (an exception, a traceback, many words)
    exception: str | None  # the exception class the paste ends with, if it names one
    truncated: bool  # a traceback whose last line (the error itself) is missing
    platform: str | None  # a platform the text itself points at (paths, names)
    hits: tuple[Hit, ...] = ()  # best first

    @property
    def best(self) -> Hit | None:
        """The answer, or None when nothing fits well enough to say so."""
        return self.hits[0] if self.hits and self.hits[0].confidence >= LIKELY else None

    @property
    def answers(self) -> tuple[Hit, ...]:
        """Every hit good enough to show as an answer (one, or two close ones)."""
        return tuple(h for h in self.hits if h.confidence >= LIKELY)

    @property
    def related(self) -> tuple[Hit, ...]:
        """Hits too weak to be an answer, worth naming as "might be related"."""
        return tuple(h for h in self.hits if h.confidence < LIKELY)

    def known_for(self, platform: str) -> Hit | None:
        """The best known-wording hit that applies to ``platform`` (for /report)."""
        for h in self.hits:
            if h.reason not in ("wording", "exception") or h.confidence < LIKELY:
                continue
            if applies_to(h.entry, platform):
                return h
        return None


def applies_to(entry: Entry, platform: str) -> bool:
    if isinstance(entry, KnownMessage):
        return entry.platform == platform
    return not entry.platforms or platform in entry.platforms


@dataclass(frozen=True)
class _Pattern:
    entry: int
    text: str
    regex: re.Pattern[str]


@dataclass
class _Index:
    entries: list[Entry]
    by_id: dict[str, int]
    patterns: list[_Pattern]
    exceptions: dict[str, set[int]]
    docs: list[dict[str, float]]
    doc_terms: list[frozenset[str]]
    lengths: list[float]
    df: Counter[str] = field(default_factory=Counter)
    avgdl: float = 1.0


def _compile(pattern: str) -> re.Pattern[str]:
    pieces = []
    for part in pattern.split("*"):
        words = [re.escape(w) for w in part.strip().split(" ") if w]
        pieces.append("(" + " ?".join(words) + ")")  # a missing space still matches
    return re.compile(_GAP.join(pieces))


def _stem(token: str) -> str:
    """A light English stemmer: enough for "drives"/"drive", "mounting"/"mount"."""
    if len(token) > 5 and token.endswith("ing"):
        return token[:-3]
    if len(token) > 4 and token.endswith("ed"):
        return token[:-2]
    if len(token) > 4 and token.endswith("es") and token[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def terms(text: str) -> list[str]:
    """Content words of a text, lowercased and lightly stemmed, for BM25."""
    out = []
    for tok in _TOKEN.findall(normalize_text(text)):
        if len(tok) < 2 or tok in _STOP or tok.isdigit():
            continue
        out.append(_stem(tok))
    return out


def _fields(entry: Entry, kb: KnowledgeBase) -> list[tuple[float, str]]:
    if isinstance(entry, KnownMessage):
        places = [entry.platform, kb.label(entry.platform)]
        body = [entry.explanation, *entry.what_to_do]
    else:
        places = [*entry.platforms, *(kb.label(p) for p in entry.platforms)]
        body = [entry.explanation, *entry.steps]
    return [
        (3.0, entry.title),
        (2.0, " ".join(entry.keywords)),
        (2.0, " ".join(p.replace("*", " ") for p in entry.patterns)),
        (1.0, " ".join(entry.exceptions)),
        (1.0, " ".join(places)),
        (1.0, " ".join(body)),
    ]


def _build(kb: KnowledgeBase) -> _Index:
    entries: list[Entry] = [*kb.messages, *kb.tips]
    index = _Index(
        entries=entries,
        by_id={e.id: i for i, e in enumerate(entries)},
        patterns=[],
        exceptions={},
        docs=[],
        doc_terms=[],
        lengths=[],
    )
    for i, e in enumerate(entries):
        for p in e.patterns:
            index.patterns.append(_Pattern(i, p, _compile(p)))
        for name in e.exceptions:
            index.exceptions.setdefault(name.lower(), set()).add(i)
        tf: dict[str, float] = {}
        for weight, text in _fields(e, kb):
            for t in terms(text):
                tf[t] = tf.get(t, 0.0) + weight
        index.docs.append(tf)
        index.doc_terms.append(frozenset(tf))
        index.lengths.append(sum(tf.values()))
        index.df.update(tf.keys())
    index.avgdl = sum(index.lengths) / max(1, len(index.lengths))
    return index


_CACHE: dict[int, tuple[KnowledgeBase, _Index]] = {}


def _index(kb: KnowledgeBase) -> _Index:
    cached = _CACHE.get(id(kb))
    if cached is None or cached[0] is not kb:
        if len(_CACHE) > 8:
            _CACHE.clear()
        cached = (kb, _build(kb))
        _CACHE[id(kb)] = cached
    return cached[1]


def _final_exception(raw: str) -> tuple[str | None, str]:
    """The exception the paste ends with (class name, its line), scanning from the bottom."""
    lines = raw.splitlines()
    for line in reversed(lines):
        m = _EXC_LINE.match(line)
        if m:
            return m.group(1), line.strip()
    for line in lines:  # IPython's header names the exception even when the end is cut off
        m = _IPYTHON_HEADER.match(line)
        if m:
            return m.group(1), ""
    return None, ""


def _platform_hint(raw: str) -> str | None:
    for pid, rx in _PLATFORM_HINTS:
        if rx.search(raw):
            return pid
    return None


def _union(spans: Iterable[tuple[int, int]]) -> int:
    total, end = 0, -1
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _wording(index: _Index, low: str) -> dict[int, tuple[int, list[str]]]:
    spans: dict[int, list[tuple[int, int]]] = {}
    hits: dict[int, list[str]] = {}
    for p in index.patterns:
        found = False
        for m in p.regex.finditer(low):
            found = True
            spans.setdefault(p.entry, []).extend(m.span(g) for g in range(1, m.re.groups + 1))
        if found:
            hits.setdefault(p.entry, []).append(p.text)
    return {i: (_union(spans[i]), hits[i]) for i in spans}


def _bm25(index: _Index, query: list[str]) -> list[tuple[float, int, float]]:
    """(score, entry, coverage) for entries sharing a query term, best first."""
    n = len(index.entries)
    k1, b = 1.2, 0.75
    qset = list(dict.fromkeys(query))
    out = []
    for i, tf in enumerate(index.docs):
        shared = [t for t in qset if t in tf]
        if not shared:
            continue
        score = 0.0
        for t in shared:
            idf = math.log(1 + (n - index.df[t] + 0.5) / (index.df[t] + 0.5))
            f = tf[t]
            score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * index.lengths[i] / index.avgdl))
        out.append((score, i, len(shared) / len(qset)))
    out.sort(key=lambda x: (-x[0], x[1]))
    return out


def match(kb: KnowledgeBase, text: str, *, platform: str | None = None, limit: int = 3) -> Result:
    """What in the knowledge base explains ``text``; ``platform`` breaks ties (e.g. /report)."""
    index = _index(kb)
    raw = text.strip()
    low = normalize_text(raw)
    exc, exc_line = _final_exception(raw)
    any_exc = {m.group(1) for m in _EXC_ANY.finditer(raw)}
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    words = low.split()
    traceback = bool(_TRACEBACK.search(raw))
    is_paste = bool(exc or any_exc or traceback or len(words) > 12 or len(lines) > 2)
    truncated = traceback and not exc_line
    hint = platform or _platform_hint(raw)
    base = Result(raw, is_paste, exc, truncated, hint)

    if low in index.by_id:  # /tips kernel-died
        entry = index.entries[index.by_id[low]]
        return _with(base, [Hit(entry, "id", 1.0, 1.0, (low,))])

    def prefer(i: int) -> tuple[int, int]:
        e = index.entries[i]
        agrees = int(bool(exc and exc.lower() in {x.lower() for x in e.exceptions}))
        here = int(bool(hint and isinstance(e, KnownMessage) and e.platform == hint)) or int(
            bool(hint and isinstance(e, Tip) and hint in e.platforms)
        )
        return agrees, here

    wording = _wording(index, low)
    if wording:
        ranked = sorted(wording, key=lambda i: (-wording[i][0], *(-x for x in prefer(i)), i))
        top = wording[ranked[0]][0]
        hits = []
        for rank, i in enumerate(ranked[:limit]):
            covered, pats = wording[i]
            conf = min(0.97, SURE + covered / 200)
            if rank == 0 and len(ranked) > 1 and wording[ranked[1]][0] >= 0.8 * top:
                conf = SURE  # two entries know this wording about equally well
            if rank > 0:
                conf = conf if covered >= 0.8 * top else min(conf, LIKELY - 0.05)
            hits.append(Hit(index.entries[i], "wording", float(covered), conf, tuple(pats)))
        return _with(base, hits)

    specific = [
        (name, index.exceptions[name.lower()])
        for name in ([exc] if exc else []) + sorted(any_exc - {exc})
        if name and name not in _BUILTIN_EXCEPTIONS and name.lower() in index.exceptions
    ]
    if specific:
        name, owners = specific[0]
        ordered = sorted(owners, key=lambda i: (*(-x for x in prefer(i)), i))
        conf = 0.7 if len(owners) == 1 else 0.45
        return _with(
            base, [Hit(index.entries[i], "exception", 1.0, conf, (name,)) for i in ordered][:limit]
        )

    query = terms(
        exc_line if exc_line else (raw if len(words) <= 60 else " ".join(raw.split()[:60]))
    )
    scored = _bm25(index, query)
    if not scored:
        return base
    if not is_paste:  # a few free words ask "how do I…" more often than they quote an error
        scored = sorted(
            ((s * (1.25 if not index.entries[i].patterns else 1.0), i, c) for s, i, c in scored),
            key=lambda x: (-x[0], x[1]),
        )
    hits = []
    full = sum(1 for _, _, cov in scored if cov >= 1.0)
    for rank, (score, i, cov) in enumerate(scored[:limit]):
        if is_paste:
            conf = min(0.4, 0.1 + 0.3 * cov)  # never an answer: only "might be related"
        elif cov < 0.5 or (len(set(query)) == 1 and full >= 4):
            conf = 0.3 + 0.2 * cov  # too few of the words, or one word many entries share
        else:
            conf = 0.35 + 0.45 * cov
            if rank > 0 and score < 0.6 * scored[0][0]:
                conf = min(conf, LIKELY - 0.05)
        hits.append(
            Hit(
                index.entries[i],
                "words",
                score,
                conf,
                tuple(t for t in query if t in index.doc_terms[i]),
            )
        )
    if is_paste:
        key = set(query)
        hits = [
            h
            for h in hits
            if h.score >= 0.35 * scored[0][0] and len(set(h.matched)) >= max(3, (len(key) + 1) // 2)
        ]
    return _with(base, hits)


def _with(base: Result, hits: list[Hit]) -> Result:
    return Result(
        base.text, base.is_paste, base.exception, base.truncated, base.platform, tuple(hits)
    )


_GENERIC_CHECKS: dict[str, str] = {
    "KeyError": "KeyError: the name in [ ] is not there; print df.columns (or the dict's keys) and compare spelling and spaces",
    "IndexError": "IndexError: a position past the end; print len(...) of the list or array first",
    "ValueError": "ValueError: the right type but an unusable value; print the value and its dtype or shape just before that line",
    "TypeError": "TypeError: a value of the wrong type; print type(x) of each argument on that line",
    "NameError": "NameError: the name was never defined in this session; run the cells above it again, top to bottom",
    "AttributeError": "AttributeError: that object has no such name; check the spelling, and whether a library update renamed or removed it",
    "SyntaxError": "SyntaxError: the code cannot be read; look at the line shown and the one before it (brackets, quotes, colons)",
    "IndentationError": "IndentationError: mixed or missing indentation; re-indent the block with spaces only",
    "ZeroDivisionError": "ZeroDivisionError: a divisor is 0; check for empty data before dividing",
    "RecursionError": "RecursionError: a function calls itself without end; check its stopping condition",
}


def generic_checks(result: Result) -> list[str]:
    """What to check when no entry fits: general steps, never a guess at a cause."""
    checks = []
    if result.exception and result.exception in _GENERIC_CHECKS:
        checks.append(_GENERIC_CHECKS[result.exception])
    checks.append(
        "Read the traceback's last line: it names the error; the lines just above it show where"
    )
    checks.append("Search that last line together with the library's name")
    if result.platform:
        checks.append(f"Worked before and nothing changed? /status {result.platform}")
    return checks


def known_message(kb: KnowledgeBase, text: str) -> KnownMessage | None:
    """The known platform message whose wording occurs in ``text``."""
    for hit in match(kb, text).hits:
        if hit.reason == "wording" and isinstance(hit.entry, KnownMessage):
            return hit.entry
    return None
