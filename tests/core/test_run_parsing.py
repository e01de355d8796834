"""How /run finds the code in a message (no kernel needed)."""

from __future__ import annotations

from handlers.run import _flags, extract_code


def test_fences_inline_and_plain() -> None:
    assert extract_code("```print(1)```", None) == "print(1)"  # one line: no language
    assert extract_code("```x = 1```", None) == "x = 1"
    assert extract_code("see:\n```python\nprint(2)\n``` thanks", None) == "print(2)"
    assert extract_code("`len('ab')`", None) == "len('ab')"
    assert extract_code("print(3)", None) == "print(3)"


def test_replied_message_is_used_when_no_code_given() -> None:
    assert extract_code("", "try this\n```py\nprint(4)\n```") == "print(4)"
    assert extract_code("  ", None) == ""


def test_flags_before_the_code() -> None:
    assert _flags("--gpu\nprint(1)") == ({"--gpu"}, "print(1)")
    assert _flags("--info") == ({"--info"}, "")
    assert _flags("--1") == (set(), "--1")  # valid Python, not an option
    assert _flags("x = 1  # --gpu") == (set(), "x = 1  # --gpu")
