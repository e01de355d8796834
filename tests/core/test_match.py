"""knowledge.match on the shipped knowledge base, and the evaluation set's shape.

The accuracy over the whole evaluation set is measured by bench/bench_tips.py; here only
specific cases that must stay right, and the rules that keep answers honest.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from knowledge.loader import DATA, KnowledgeBase, KnowledgeError, load
from knowledge.match import LIKELY, SURE, match, terms

EVAL = Path(__file__).resolve().parents[2] / "knowledge" / "eval" / "errors.toml"

# The six pastes that got a confidently wrong answer in issue 13, as users pasted them.
ISSUE_13 = [
    (
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 11.17 GiB total "
        "capacity; 10.67 GiB already allocated; 2.81 MiB free; 185.39 MiB cached)",
        "torch-cuda-oom",
    ),
    ("Your session crashed after using all available RAM", "colab-ram-crash"),
    ("The kernel appears to have died. It will restart automatically.", "kernel-died"),
    (
        "ImportError: libGL.so.1: cannot open shared object file: No such file or directory",
        "libgl-missing",
    ),
    (
        "OSError: Could not find kaggle.json. Make sure it's located in /root/.kaggle. "
        "Or use the environment method.",
        "kaggle-json-missing",
    ),
    (
        "Your notebook tried to allocate more memory than is available. It has restarted.",
        "kaggle-memory-restart",
    ),
]


@pytest.mark.parametrize(("text", "want"), ISSUE_13)
def test_issue_13_pastes_find_their_entry_with_confidence(
    kb: KnowledgeBase, text: str, want: str
) -> None:
    r = match(kb, text)
    assert r.best is not None and r.best.id == want
    assert r.best.reason == "wording" and r.best.confidence >= SURE


def test_known_wording_beats_a_shared_word(kb: KnowledgeBase) -> None:
    # "GPU" and "memory" are in many entries; the OOM wording decides.
    r = match(kb, "torch.cuda.OutOfMemoryError: CUDA out of memory on the GPU, memory full")
    assert r.best is not None and r.best.id == "torch-cuda-oom"
    # A specific entry that extends a generic one's wording wins over it.
    r = match(kb, "FileNotFoundError: [Errno 2] No such file or directory: '../input/x/train.csv'")
    assert r.best is not None and r.best.id == "kaggle-input-paths"
    r = match(kb, "FileNotFoundError: [Errno 2] No such file or directory: 'train.csv'")
    assert r.best is not None and r.best.id == "file-not-found"


def test_wording_survives_phone_pastes(kb: KnowledgeBase) -> None:
    # curly quotes, full-width punctuation, a missing space, a line break mid-sentence
    r = match(kb, "RuntimeError： Attempting todeserialize object on a CUDA device but torch。cuda")
    assert r.best is not None and r.best.id == "torch-load-cuda-on-cpu"
    r = match(kb, "AttributeError: module ‘numpy’ has no\nattribute ‘float’")
    assert r.best is not None and r.best.id == "numpy-removed-names"


def test_a_specific_exception_alone_is_enough_a_builtin_is_not(kb: KnowledgeBase) -> None:
    r = match(kb, "ResourceExhaustedError: {{function_node __inference_train_step_1234}}")
    assert r.best is not None and r.best.id == "tf-resource-exhausted"
    assert r.best.reason == "exception" and r.best.confidence < SURE
    assert match(kb, "RuntimeError: something odd in my_function").best is None
    assert match(kb, "OSError: [Errno 5] Input/output error").best is None


@pytest.mark.parametrize(
    "text",
    [
        "RuntimeError: CUDA error: device-side assert triggered\n"
        "CUDA kernel errors might be asynchronously reported at some other API call",
        "KeyError: 'price'",
        "ValueError: could not convert string to float: 'yes'",
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x8 and 54x8)",
    ],
)
def test_unknown_errors_get_no_answer(kb: KnowledgeBase, text: str) -> None:
    r = match(kb, text)
    assert r.is_paste and r.best is None
    assert all(h.confidence < LIKELY for h in r.hits)


def test_a_cut_traceback_is_noticed(kb: KnowledgeBase) -> None:
    r = match(
        kb,
        'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n'
        "    model.fit(x)\n",
    )
    assert r.truncated and r.best is None
    header = "ModuleNotFoundError                       Traceback (most recent call last)\n----> 2 import x"
    r = match(kb, header)
    assert r.exception == "ModuleNotFoundError" and r.truncated
    assert r.best is not None and r.best.id == "install-package"


def test_free_words(kb: KnowledgeBase) -> None:
    r = match(kb, "mount drive")
    assert r.best is not None and r.best.id == "colab-mount-drive" and r.best.reason == "words"
    assert not r.is_paste
    assert match(kb, "zzqqxx").hits == ()
    # one word many entries share is a question back, not an answer
    vague = match(kb, "quota")
    assert vague.best is None and len(vague.related) >= 2


def test_ids_and_platform_hints(kb: KnowledgeBase) -> None:
    r = match(kb, "kernel-died")
    assert r.best is not None and r.best.reason == "id"
    r = match(kb, "it says no backend", platform="colab")
    hit = r.known_for("colab")
    assert hit is not None and hit.id == "colab-no-gpu-backend"
    assert r.known_for("kaggle") is None  # a Colab message says nothing about Kaggle
    tip = match(kb, "CUDA out of memory").known_for("kaggle")
    assert tip is not None and tip.id == "torch-cuda-oom"  # tips with no platforms apply anywhere


def test_terms_stem_and_drop_stop_words() -> None:
    assert terms("How do I mount my Google Drives?") == ["mount", "google", "drive"]


def test_knowledge_base_size_and_honesty(kb: KnowledgeBase) -> None:
    entries = [*kb.messages, *kb.tips]
    assert len(entries) >= 60
    for e in entries:
        assert e.verified == (e.unverified == "")
        assert e.sources or not e.verified
    assert any(not e.verified for e in entries)  # the unverified parts are marked, not hidden


def test_one_wording_points_at_one_entry(tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    f = data / "tips.toml"
    f.write_text(
        f.read_text().replace('"dead kernel",', '"dead kernel",\n  "cuda out of memory",', 1)
    )
    with pytest.raises(KnowledgeError, match="cuda out of memory"):
        load(data_dir=data)


@pytest.mark.parametrize(
    ("patterns", "why"),
    [
        ('["quota"]', "one plain word"),
        ('["no gpu"]', "shorter than 8"),
        ('["*out of memory"]', "joins two pieces"),
    ],
)
def test_generic_patterns_are_refused(tmp_path: Path, patterns: str, why: str) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    f = data / "tips.toml"
    f.write_text(
        f.read_text().replace(
            'patterns = ["torch not compiled with cuda enabled"]', f"patterns = {patterns}", 1
        )
    )
    with pytest.raises(KnowledgeError, match=why):
        load(data_dir=data)


def test_unverified_needs_a_reason(tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    f = data / "tips.toml"
    f.write_text(f.read_text().replace('unverified = "General advice; menu names', '# "', 1))
    with pytest.raises(KnowledgeError, match="verified = false needs unverified"):
        load(data_dir=data)


def test_evaluation_set_is_well_formed(kb: KnowledgeBase) -> None:
    cases = tomllib.loads(EVAL.read_text(encoding="utf-8"))["case"]
    assert len(cases) >= 80
    ids = {e.id for e in (*kb.messages, *kb.tips)} | {"none"}
    allowed = {"text", "source", "expect", "note", "split"}
    texts = set()
    for case in cases:
        assert set(case) <= allowed and {"text", "source", "expect"} <= set(case), case
        assert case["source"].startswith("https://"), case["source"]
        assert case["text"].strip() and case["text"] not in texts
        texts.add(case["text"])
        want = [case["expect"]] if isinstance(case["expect"], str) else case["expect"]
        assert want and set(want) <= ids, want
        assert case.get("split", "development") in {"development", "holdout"}
    assert sum(c["expect"] == "none" for c in cases) >= 10  # "don't know" is tested too
