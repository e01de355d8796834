from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.core.parse import MAX_ARGS, clean, parse, words


def test_command_and_args() -> None:
    p = parse("  /Status   colab  ")
    assert (p.command, p.args, p.addressed_elsewhere) == ("status", "colab", False)


def test_group_suffix_for_us_and_for_another_bot() -> None:
    assert parse("/status@NbHelpBot colab", "nbhelpbot").command == "status"
    other = parse("/status@otherbot colab", "nbhelpbot")
    assert other.addressed_elsewhere


def test_a_fence_may_follow_the_command_directly() -> None:
    p = parse("/run```python\nprint(1)\n```")
    assert p.command == "run" and p.args.startswith("```python")


def test_not_a_command() -> None:
    assert parse("hello /status").command == ""
    assert parse("/").command == ""
    assert parse("").command == ""


def test_nul_and_controls_removed_but_rtl_and_emoji_kept() -> None:
    text = "/tips a\x00b\x1b[31m \u202eabc 🐍"
    p = parse(text)
    assert "\x00" not in p.args and "\x1b" not in p.args
    assert "🐍" in p.args and "abc" in p.args


def test_long_args_truncated() -> None:
    p = parse("/tips " + "x" * (MAX_ARGS + 10))
    assert p.truncated and len(p.args) == MAX_ARGS


def test_words_strip_punctuation() -> None:
    assert words("Colab, GPU!  (offline)") == ["colab", "gpu", "offline"]


@given(st.text())
def test_parse_never_raises(text: str) -> None:
    p = parse(text, "bot")
    assert len(p.args) <= MAX_ARGS
    assert "\x00" not in p.args
    assert clean(p.args) == p.args
