"""What an announcement (a GitHub issue labelled ``announce``) is: an outage, a notice, or unsure.

Colab's team opens ``announce`` issues both for outages ("Many users unable to connect to any
runtimes", colabtools#4574) and for news (TPU deprecation #5566, TPU migration #4481). Only an
outage report may move a verdict; a notice is news; anything in between is "possible problem"
with the link. Title and body are both read; the title weighs more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["outage", "notice", "unsure"]
Severity = Literal["down", "degraded"]

_W = r"(?<![\w-])"  # a word start that is not inside a longer word
# Phrases that real outage posts use for "it does not work at all".
DOWN = re.compile(
    _W + r"(outages?|down|unavailable|inaccessible|not (?:be )?(?:working|loading|available)|"
    r"not connecting|"
    r"(?:(?:unable|not able|failing|fail(?:s|ed)?) to|cannot|can ?not|can't|could ?not|"
    r"couldn't|won't|will not|does not|doesn't) "
    r"(?:connect|access|load|start|open|reach|allocate|assign|launch|mount|save|run|receive|get)|"
    r"no (?:runtimes?|backends?|gpus?) (?:are )?available|service (?:disruption|interruption))\b",
    re.I,
)
# Phrases for "it works, badly" or "something is wrong for some".
DEGRADED = re.compile(
    _W + r"(degraded|degradation|disruptions?|elevated (?:error|latency|failure)s?|"
    r"(?:higher|increased) (?:error|failure)s?(?: rates?)?|intermittent(?:ly)?|slow(?:ness|er)?|"
    r"delays?|delayed|partial(?:ly)?|errors?|failures?|failing|disconnect\w*|"
    r"(?:issues?|problems?|trouble) (?:with|affecting|connecting)|stuck (?:on|at|while)|"
    r"connection (?:issues?|problems?|errors?)|"
    r"(?:many|some|a small number of(?: our)?) users|users (?:are|may be) "
    r"(?:experiencing|seeing|reporting|unable)|experiencing (?:issues|problems|errors)|"
    r"investigating|mitigat(?:ed|ing|ion)|incident)\b",
    re.I,
)
# Phrases of news: deprecations, migrations, launches, policy changes.
NOTICE = re.compile(
    _W + r"(announc\w*|deprecat\w*|retir\w*|migrat\w*|introduc\w*|launch(?:es|ed|ing)?|"
    r"releas\w*|now available|new (?:feature|version|runtime)s?|sunset\w*|end of life|"
    r"replac\w*|upgrad\w*|changes? (?:to|in)|update[sd]? (?:to|on)|pricing|polic(?:y|ies)|"
    r"terms of service|upcoming|scheduled|will be|going forward|starting (?:on|from|in))\b",
    re.I,
)
# Words of something planned: "Scheduled maintenance: Colab will be unavailable on Saturday".
FUTURE = re.compile(
    _W + r"(scheduled|planned|upcoming|will be|maintenance window|in advance)\b", re.I
)


@dataclass(frozen=True, slots=True)
class Reading:
    kind: Kind
    severity: Severity | None  # for an outage: how bad, by the words used
    why: str  # the phrase that decided it, for the log and tests


def _first(rx: re.Pattern[str], text: str) -> str | None:
    m = rx.search(text)
    return m.group(0).lower() if m else None


def classify(title: str, body: str = "") -> Reading:
    """Read one announcement. Deterministic and conservative: when in doubt, ``unsure``."""
    title = " ".join(title.split())
    body = " ".join((body or "").split())[:4000]
    t_down, t_deg, t_note = _first(DOWN, title), _first(DEGRADED, title), _first(NOTICE, title)
    b_down, b_deg, b_note = _first(DOWN, body), _first(DEGRADED, body), _first(NOTICE, body)
    if t_note and not (t_down or t_deg):
        # A notice by its title. Its body may still describe a live outage ("the migration is
        # causing outages"): then say "possible problem" rather than calling it news.
        if b_down and not b_note:
            return Reading("unsure", None, f"notice title '{t_note}', body '{b_down}'")
        return Reading("notice", None, f"title '{t_note}'")
    if (t_down or t_deg) and (t_future := _first(FUTURE, title)):
        return Reading("notice", None, f"planned: title '{t_future}'")
    if t_down:
        return Reading("outage", "down", f"title '{t_down}'")
    if t_deg:
        if t_note:  # "Elevated errors after the upgrade": a problem, told with news words
            return Reading("outage", "degraded", f"title '{t_deg}'")
        sev: Severity = "down" if b_down else "degraded"
        return Reading("outage", sev, f"title '{t_deg}'" + (f", body '{b_down}'" if b_down else ""))
    # The title says neither: let the body decide, less confidently.
    if b_down and (b_deg or not b_note):
        return Reading("outage", "down", f"body '{b_down}'")
    if b_note and not (b_down or b_deg):
        return Reading("notice", None, f"body '{b_note}'")
    why = b_down or b_deg or b_note
    return Reading("unsure", None, f"body '{why}'" if why else "no telling words")
