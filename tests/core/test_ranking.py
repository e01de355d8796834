from __future__ import annotations

from knowledge.loader import KnowledgeBase
from knowledge.ranking import NEEDS, need_of, rank


def test_gpu_platforms_first(kb: KnowledgeBase) -> None:
    picks = rank(kb.alive(), ["gpu"], exclude="colab")
    assert picks[0].platform.id in {"kaggle", "sagemaker-studio-lab"}
    firsts = [p.platform.id for p in picks[:2]]
    assert "kaggle" in firsts
    assert all(not p.missed for p in picks[:2])


def test_never_the_named_or_a_retired_platform(kb: KnowledgeBase) -> None:
    for needs in ([], ["gpu"], ["offline"], ["no-phone", "persistent"]):
        ids = [
            p.platform.id
            for p in rank([*kb.alive(), kb.platforms["azure-notebooks"]], needs, exclude="kaggle")
        ]
        assert "kaggle" not in ids and "azure-notebooks" not in ids
        assert len(ids) <= 5


def test_offline_leads_with_offline_options(kb: KnowledgeBase) -> None:
    picks = rank(kb.alive(), ["offline"], exclude="colab")
    assert picks[0].platform.id == "local-jupyter"
    assert picks[0].platform.access.offline == "yes"


def test_down_platforms_go_to_the_bottom(kb: KnowledgeBase) -> None:
    before = rank(kb.alive(), ["gpu"], exclude="colab", limit=20)
    top = before[0].platform.id
    after = rank(kb.alive(), ["gpu"], exclude="colab", down={top}, limit=20)
    assert after[-1].platform.id == top and after[-1].down


def test_a_missed_need_ranks_below_every_fit(kb: KnowledgeBase) -> None:
    picks = rank(kb.alive(), ["no-phone"], limit=20)
    seen_miss = False
    for p in picks:
        seen_miss = seen_miss or bool(p.missed)
        if seen_miss:
            assert p.missed


def test_synonyms() -> None:
    assert need_of("CUDA") == "gpu" and need_of("no_card") == "no-card" and need_of("bogus") is None
    assert set(NEEDS) >= {
        "gpu",
        "tpu",
        "no-phone",
        "no-card",
        "no-signup",
        "offline",
        "low-bandwidth",
        "persistent",
        "private",
        "collab",
        "r",
    }


def test_a_contradicting_fact_ranks_the_platform_down(kb: KnowledgeBase) -> None:
    """`/alternatives colab gpu no-phone`: Kaggle's GPU needs a verified phone, so Kaggle misses
    "no phone" and ranks below every platform that does not miss a need."""
    from handlers.alternatives import why

    picks = rank(kb.alive(), ["gpu", "no-phone"], exclude="colab", limit=20)
    kaggle = next(p for p in picks if p.platform.id == "kaggle")
    assert "no-phone" in kaggle.missed and "no-phone" not in kaggle.partial
    assert kaggle.conflicts == ("needs a verified phone for free GPU",)
    assert "✗ needs a verified phone for free GPU" in why(kaggle)
    assert "no phone number needed, with conditions" not in why(kaggle)
    first_miss = next(i for i, p in enumerate(picks) if p.missed)
    assert all(not p.missed for p in picks[:first_miss])
    assert picks.index(kaggle) >= first_miss
    # Without the GPU, a CPU notebook on Kaggle needs no phone: a fit with conditions.
    alone = next(p for p in rank(kb.alive(), ["no-phone"], limit=20) if p.platform.id == "kaggle")
    assert alone.partial == ("no-phone",) and not alone.missed and not alone.conflicts
