"""Ranking alternatives for a set of needs, from the platforms' recorded facts.

Each need maps a platform to a :data:`~knowledge.schema.Fact`. A platform that fails a need
("no") ranks below every platform that does not; among the rest, more "yes" answers win, then
fewer unknowns, then the editorial ``priority``. Platforms that are down right now go to the
bottom; retired ones and the platform being replaced never appear.

Needs are read together: a "with conditions" answer whose condition is another need's opposite
is a miss. Kaggle's GPU needs a verified phone (``signup.phone_for``), so ``gpu no-phone`` finds
that Kaggle fails "no phone number needed" (with the reason in :attr:`Pick.conflicts`) instead of
listing it as a fit beside a phone warning.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from knowledge.schema import Fact, Platform

_INVERSE: dict[Fact, Fact] = {"yes": "no", "no": "yes", "partial": "partial", "unknown": "unknown"}
_BANDWIDTH: dict[str, Fact] = {"low": "yes", "medium": "partial", "high": "no"}
_COLLAB: dict[str, Fact] = {"realtime": "yes", "sharing": "partial", "none": "no"}


def _invert(f: Fact) -> Fact:
    return _INVERSE[f]


@dataclass(frozen=True)
class Need:
    name: str
    label: str  # how "why it fits" says it
    check: Callable[[Platform], Fact]


NEEDS: dict[str, Need] = {
    n.name: n
    for n in (
        Need("gpu", "free GPU", lambda p: p.accelerators.gpu),
        Need("tpu", "free TPU", lambda p: p.accelerators.tpu),
        Need("no-phone", "no phone number needed", lambda p: _invert(p.signup.phone)),
        Need("no-card", "no card needed", lambda p: _invert(p.signup.card)),
        Need("no-signup", "no account needed", lambda p: _invert(p.signup.account)),
        Need("offline", "works without a connection", lambda p: p.access.offline),
        Need(
            "low-bandwidth",
            "light on bandwidth",
            lambda p: _BANDWIDTH.get(p.access.bandwidth, "unknown"),
        ),
        Need("persistent", "keeps your files", lambda p: p.storage.persistent),
        Need("private", "private notebooks", lambda p: p.private),
        Need(
            "collab",
            "real-time collaboration",
            lambda p: _COLLAB.get(p.collaboration, "unknown"),
        ),
        Need("internet", "internet from the notebook (pip install)", lambda p: p.access.internet),
        Need("r", "runs R", lambda p: "yes" if "r" in p.languages else "no"),
        Need("julia", "runs Julia", lambda p: "yes" if "julia" in p.languages else "no"),
    )
}

SYNONYMS: dict[str, str] = {
    "cuda": "gpu",
    "gpus": "gpu",
    "nvidia": "gpu",
    "tpus": "tpu",
    "nophone": "no-phone",
    "no-sms": "no-phone",
    "nocard": "no-card",
    "no-credit-card": "no-card",
    "nosignup": "no-signup",
    "no-account": "no-signup",
    "no-login": "no-signup",
    "anonymous": "no-signup",
    "no-internet": "offline",
    "lowbandwidth": "low-bandwidth",
    "low-data": "low-bandwidth",
    "slow-internet": "low-bandwidth",
    "slow": "low-bandwidth",
    "bandwidth": "low-bandwidth",
    "storage": "persistent",
    "save": "persistent",
    "persist": "persistent",
    "collaboration": "collab",
    "realtime": "collab",
    "team": "collab",
    "pip": "internet",
    "rstats": "r",
    "rlang": "r",
}


def need_of(word: str) -> str | None:
    w = word.strip().lower().replace("_", "-")
    return w if w in NEEDS else SYNONYMS.get(w)


@dataclass(frozen=True)
class Pick:
    platform: Platform
    met: tuple[str, ...]  # needs answered "yes"
    partial: tuple[str, ...]
    unknown: tuple[str, ...]
    missed: tuple[str, ...]  # needs answered "no"
    down: bool
    conflicts: tuple[str, ...] = ()  # why a need is missed only because of another asked need


def rank(
    platforms: Sequence[Platform],
    needs: Sequence[str] = (),
    *,
    exclude: str | None = None,
    down: Collection[str] = (),
    limit: int = 5,
) -> list[Pick]:
    picks: list[Pick] = []
    for p in platforms:
        if not p.alive or p.id == exclude:
            continue
        answers = {n: NEEDS[n].check(p) for n in needs}
        conflicts = _conflicts(p, needs, answers)
        picks.append(
            Pick(
                p,
                tuple(n for n, a in answers.items() if a == "yes"),
                tuple(n for n, a in answers.items() if a == "partial"),
                tuple(n for n, a in answers.items() if a == "unknown"),
                tuple(n for n, a in answers.items() if a == "no"),
                p.id in down,
                conflicts,
            )
        )
    picks.sort(
        key=lambda k: (
            k.down,
            len(k.missed),
            -(2 * len(k.met) + len(k.partial)),
            len(k.unknown),
            -k.platform.priority,
            k.platform.id,
        )
    )
    return picks[:limit]


def _conflicts(p: Platform, needs: Sequence[str], answers: dict[str, Fact]) -> tuple[str, ...]:
    """Needs that cannot hold together on ``p``; turns the contradicted one into a miss."""
    out: list[str] = []
    if "no-phone" in answers and p.signup.phone == "partial":
        blocked = [n for n in needs if n in p.signup.phone_for]
        if blocked:
            answers["no-phone"] = "no"
            out.append("needs a verified phone for " + ", ".join(NEEDS[n].label for n in blocked))
    return tuple(out)
