"""The shipped status sources say how they were verified; the schema holds them to it."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from knowledge.loader import KnowledgeBase
from knowledge.ranking import NEEDS
from knowledge.schema import StatusSource


def test_every_shipped_status_source_says_how_it_was_verified(kb: KnowledgeBase) -> None:
    for p in kb.platforms.values():
        for s in p.status_sources:
            where = f"{p.id}: {s.url}"
            assert "verified" in s.model_fields_set, f"{where} does not say verified = …"
            assert s.note, f"{where} needs a note saying how (or why not)"
            if s.verified != "unverified":
                assert isinstance(s.verified, date) and s.verified <= date(2026, 12, 31)
                assert s.evidence is not None and str(s.evidence).startswith("https://")


def test_no_guessed_statuspage_feeds_remain(kb: KnowledgeBase) -> None:
    """status.jetbrains.com is not a Statuspage API and would cover all of JetBrains; no
    evidence was found for an API at status.lightning.ai or status.deepnote.com."""
    hosts = {s.url.host for p in kb.platforms.values() for s in p.status_sources}
    assert not hosts & {"status.jetbrains.com", "status.lightning.ai", "status.deepnote.com"}


def test_a_verified_source_needs_evidence() -> None:
    with pytest.raises(ValidationError, match="evidence"):
        StatusSource(kind="statuspage", url="https://status.example.org/", verified="2026-01-01")  # type: ignore[arg-type]
    s = StatusSource(kind="statuspage", url="https://status.example.org/", official=True)  # type: ignore[arg-type]
    assert s.verified == "unverified" and not s.trusted


def test_phone_conditions_name_real_needs(kb: KnowledgeBase) -> None:
    for p in kb.platforms.values():
        assert set(p.signup.phone_for) <= set(NEEDS), p.id
    assert set(kb.platforms["kaggle"].signup.phone_for) >= {"gpu", "internet"}
