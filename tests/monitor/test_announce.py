"""Announcement classification on the wording real posts use (each row says where it is from)."""

from __future__ import annotations

import pytest

from bot.monitor.announce import classify

OUTAGES = [
    # colabtools#4574 (announce): title and body as posted by the Colab team.
    (
        "Many users unable to connect to any runtimes",
        "Google Cloud is experiencing an outage right now, more details here. This is causing "
        "many users to be unable to connect to any runtime types.",
        "down",
    ),
    # colabtools#5247, the Colab team's comment: "we had an outage today that affected
    # connecting to runtimes".
    ("Outage connecting to runtimes", "we had an outage today that affected connecting", "down"),
    # colabtools#4727/#4728, the Colab team's comment: "A recent update caused an issue
    # connecting for a small number of our users."
    (
        "Connection issues for some users",
        "A recent update caused an issue connecting for a small number of our users.",
        "degraded",
    ),
    # colabtools#4588 / #5247 (user titles the team might reuse): "can't connect to runtime",
    # "runtime not connecting".
    ("Colab can't connect to runtime", "", "down"),
    ("Colab runtime not connecting", "", "down"),
    # The fake's scenarios, which follow Statuspage-style wording.
    ("Elevated errors saving notebooks", "", "degraded"),
]
NOTICES = [
    # colabtools#5566 (announce): a deprecation notice.
    (
        "Announcing the deprecation of TPU v2-8 chips and introduction of TPU v5e-1 chips into "
        "free tier",
        "## TPU V2-8 Retirement\nWe are retiring the TPU v2-8 and replacing them with the newer "
        "TPU v5e-1. This change will take place in two phases over the coming weeks: ...",
    ),
    # colabtools#4481 (announce): a migration notice.
    (
        "TPU Node to TPU VM Migration",
        "We recently released TPU VM accelerators for Colab (backed by TPU v2-8)! This "
        "deprecates the legacy TPU Node accelerators ... Between April and June 2024, we'll "
        "begin migrating existing legacy TPU notebooks to modern TPU VM machines. ...",
    ),
    # A planned window is news, not an outage, even though it says "unavailable".
    ("Scheduled maintenance: Colab will be unavailable on Saturday", ""),
]


@pytest.mark.parametrize(("title", "body", "severity"), OUTAGES)
def test_outage_posts_are_outages(title: str, body: str, severity: str) -> None:
    r = classify(title, body)
    assert (r.kind, r.severity) == ("outage", severity), r.why


@pytest.mark.parametrize(("title", "body"), NOTICES)
def test_notices_are_news(title: str, body: str) -> None:
    r = classify(title, body)
    assert r.kind == "notice", r.why


def test_the_body_is_read_when_the_title_says_nothing() -> None:
    assert classify("Update", "Many users are unable to connect to runtimes.").kind == "outage"
    assert classify("Colab and TPUs", "We are retiring the old TPU runtime.").kind == "notice"


def test_unclear_posts_are_unsure_not_a_verdict() -> None:
    assert classify("GPU availability", "").kind == "unsure"
    # A notice whose body describes a live failure: possible problem, not news.
    r = classify("TPU migration", "Notebooks are failing to connect right now.")
    assert r.kind == "unsure"
