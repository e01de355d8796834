"""Pydantic schema of the knowledge base: platforms, known non-outage messages, tips.

Every fact that a source does not confirm is written as ``"unknown"`` rather than guessed;
the tri-state ``Fact`` type makes that explicit and the ranking treats it as such.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

Fact = Literal["yes", "no", "partial", "unknown"]
"""A tri-state fact: ``partial`` means "with conditions" (e.g. a GPU only after verification)."""

Bandwidth = Literal["low", "medium", "high", "unknown"]
Collaboration = Literal["realtime", "sharing", "none", "unknown"]
SourceKind = Literal[
    "http",  # plain probe: DNS -> TCP -> TLS -> HTTP status, latency, optional keyword
    "statuspage",  # Atlassian Statuspage summary.json
    "google_cloud",  # status.cloud.google.com incidents.json
    "google_workspace",  # Google Workspace incidents.json
    "betterstack",  # Better Stack index.json
    "binder_health",  # a mybinder.org federation member's /health
    "github_issues",  # open GitHub issues with a label (Colab's `announce`)
]

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Lifecycle(Strict):
    state: Literal["alive", "retired"]
    announced_on: date | None = None
    retired_on: date | None = None
    successors: list[str] = Field(default_factory=list)
    note: str = ""

    @model_validator(mode="after")
    def _retired_needs_date(self) -> Lifecycle:
        if self.state == "retired" and (self.retired_on is None or not self.successors):
            raise ValueError("a retired platform needs retired_on and at least one successor")
        if self.state == "alive" and self.retired_on is not None:
            raise ValueError("an alive platform cannot have retired_on")
        return self


class Accelerators(Strict):
    gpu: Fact
    gpu_model: str = "unknown"
    tpu: Fact
    tpu_model: str = "unknown"
    notes: str = ""


class Limits(Strict):
    summary: str = Field(min_length=1)
    session: str = "unknown"
    ram: str = "unknown"


class Storage(Strict):
    persistent: Fact
    summary: str = "unknown"


class Signup(Strict):
    account: Fact
    phone: Fact
    card: Fact
    notes: str = ""
    # With ``phone = "partial"``: the needs (``knowledge.ranking.NEEDS`` names, e.g. "gpu",
    # "internet") that only work after phone verification.
    phone_for: list[str] = Field(default_factory=list)


class Access(Strict):
    internet: Fact  # can the notebook itself reach the internet (pip install, downloads)?
    offline: Fact  # does it keep working without a connection on the user's side?
    bandwidth: Bandwidth  # how much connection the user needs


class StatusSource(Strict):
    """One place the monitor reads: an official feed or our own probe.

    ``verified`` says how far the source was checked: the date someone confirmed that the URL
    serves this kind's format for this platform (for a probe: that it is the platform's own
    address), with ``evidence`` (a URL showing it) and ``note`` (how). ``"unverified"`` when
    nobody did. An unverified feed never drives a verdict on its own: its statements count only
    as hints ("possible problems"), see :attr:`trusted`.
    """

    kind: SourceKind
    url: HttpUrl
    name: str = ""
    component: str | None = None  # statuspage component name, e.g. "Codespaces"
    products: list[str] = Field(default_factory=list)  # google incident product titles
    label: str | None = None  # github_issues label
    keyword: str | None = None  # http: text the body must contain
    degraded_ms: int | None = Field(default=None, gt=0)  # http: slower than this = degraded
    official: bool = False  # an official feed (moves the verdict at once) vs our own probe
    verified: date | Literal["unverified"] = "unverified"
    evidence: HttpUrl | None = None  # what shows the format / address (required with a date)
    note: str = ""  # how it was verified, or why it is not

    @model_validator(mode="after")
    def _verified_needs_evidence(self) -> StatusSource:
        if self.verified != "unverified" and self.evidence is None:
            raise ValueError("a verified status source needs an evidence URL")
        return self

    @property
    def trusted(self) -> bool:
        """An official feed whose format was verified: its statements move the verdict."""
        return self.official and self.verified != "unverified"


class Platform(Strict):
    id: str
    name: str = Field(min_length=1, max_length=60)
    aliases: list[str] = Field(default_factory=list)
    url: HttpUrl
    summary: str = Field(min_length=1, max_length=200)
    lifecycle: Lifecycle
    accelerators: Accelerators
    limits: Limits
    storage: Storage
    signup: Signup
    access: Access
    languages: list[str] = Field(min_length=1)
    collaboration: Collaboration
    private: Fact
    strengths: list[str] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    move_steps: list[str] = Field(default_factory=list)
    status_sources: list[StatusSource] = Field(default_factory=list)
    priority: int = Field(ge=0, le=100, description="editorial tie-break: higher ranks first")
    last_verified: date
    sources: list[HttpUrl] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("id must be lowercase letters, digits and '-', at most 40 characters")
        return v

    @field_validator("aliases", "languages")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [a.strip().lower() for a in v if a.strip()]

    @model_validator(mode="after")
    def _steps(self) -> Platform:
        if self.lifecycle.state == "alive" and not 2 <= len(self.move_steps) <= 4:
            raise ValueError("an alive platform needs 2-4 move_steps")
        return self

    @property
    def alive(self) -> bool:
        return self.lifecycle.state == "alive"


PATTERN_WORD = re.compile(r"[^\W_]+", re.UNICODE)
EXCEPTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize_text(text: str) -> str:
    """How both patterns and pasted text are compared: lowercase, one kind of quote, one space.

    Pasted errors arrive with curly or full-width quotes (phones, translated pages), markdown
    backticks and line breaks in the middle of a sentence; none of that should matter.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.translate(_QUOTES)
    return " ".join(text.split())


_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "`": "'", "\u3002": "."}
)


def _check_patterns(v: list[str]) -> list[str]:
    out: list[str] = []
    for raw in v:
        p = normalize_text(raw)
        if not p:
            continue
        if p.startswith("*") or p.endswith("*") or "**" in p:
            raise ValueError(f"pattern {raw!r}: '*' only joins two pieces of wording")
        words = PATTERN_WORD.findall(p.replace("*", " "))
        literal = p.replace("*", "")
        single_token = len(words) < 2
        if single_token and not re.search(r"[._/#-]", literal) and len(literal) < 14:
            raise ValueError(
                f"pattern {raw!r} is one plain word: too generic to identify a message "
                "(use keywords for words, patterns for wording)"
            )
        if len(literal.replace(" ", "")) < 8:
            raise ValueError(f"pattern {raw!r} is shorter than 8 characters: too generic")
        out.append(p)
    return out


def _check_exceptions(v: list[str]) -> list[str]:
    for name in v:
        if not EXCEPTION_RE.match(name):
            raise ValueError(f"exception {name!r}: a class name such as OutOfMemoryError")
    return v


class Entry(Strict):
    """What known messages and tips share: how they are recognised and how sure we are."""

    id: str
    title: str = Field(min_length=1, max_length=100)
    # Wording users see, as case-insensitive substrings; '*' joins two pieces with up to a
    # line of anything between them ("failed to assign*backend").
    patterns: list[str] = Field(default_factory=list)
    # Exception class names this entry explains (last dotted part: "OutOfMemoryError").
    exceptions: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)  # words for free-text search
    code: str = ""  # optional snippet shown as a code block
    sources: list[HttpUrl] = Field(default_factory=list)
    # False when part of the entry could not be confirmed by a source; `unverified` then
    # says which part, and the bot shows it next to the answer.
    verified: bool = True
    unverified: str = ""

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("id must be lowercase letters, digits and '-', at most 40 characters")
        return v

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return _check_patterns(v)

    @field_validator("exceptions")
    @classmethod
    def _exceptions(cls, v: list[str]) -> list[str]:
        return _check_exceptions(v)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        return [k.strip().lower() for k in v if k.strip()]

    @model_validator(mode="after")
    def _verification(self) -> Entry:
        if self.verified and self.unverified:
            raise ValueError("unverified is set: also set verified = false")
        if not self.verified and not self.unverified:
            raise ValueError("verified = false needs unverified: say which part has no source")
        if not self.sources and self.verified:
            raise ValueError("no sources: add one, or set verified = false and say why")
        if self.patterns and not self.sources:
            raise ValueError("an entry that recognises wording needs a source for that wording")
        return self


class KnownMessage(Entry):
    """A message a platform shows (its wording, one platform); usually not an outage."""

    platform: str
    patterns: list[str] = Field(min_length=1)
    explanation: str = Field(min_length=1)
    what_to_do: list[str] = Field(min_length=1)
    not_an_outage: bool = True
    last_verified: date
    sources: list[HttpUrl] = Field(min_length=1)


class Tip(Entry):
    """Help for an error or a situation on any platform; may recognise error wording too."""

    platforms: list[str] = Field(default_factory=list)  # empty = applies everywhere
    explanation: str = ""  # what the error means, when the tip answers one
    steps: list[str] = Field(min_length=1)
    last_verified: date | None = None


class MessagesFile(Strict):
    message: list[KnownMessage]


class TipsFile(Strict):
    tip: list[Tip]
