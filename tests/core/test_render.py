"""Renderers: escaping, limits, splitting that never breaks a code block."""

from __future__ import annotations

import html.parser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.models import (
    Attachment,
    BulletList,
    CodeBlock,
    Link,
    Paragraph,
    Reply,
    Span,
    bold,
    codeblock,
    link,
    para,
)
from bot.core.render import ConsoleRenderer, DiscordRenderer, TelegramRenderer, units
from bot.core.render.base import plain_text
from bot.kernels.formatting import clean_text

TG, DC, CON = TelegramRenderer(), DiscordRenderer(), ConsoleRenderer()


class TagChecker(html.parser.HTMLParser):
    """Checks Telegram HTML: only allowed tags, properly nested and closed."""

    ALLOWED = frozenset({"b", "i", "code", "pre", "a"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED:
            self.errors.append(f"tag {tag}")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced {tag}")


def valid_telegram_html(text: str) -> bool:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    return not checker.errors and not checker.stack


def test_telegram_escapes_everything_dynamic() -> None:
    r = Reply.of(
        para(bold("<b>x</b> & @everyone"), " <script>"), codeblock("if a < b: print('</pre>')")
    )
    out = TG.render(r).messages[0]
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "&lt;/pre&gt;" in out
    assert valid_telegram_html(out)
    assert "@everyone" not in out  # neutered: no mention entity


def test_telegram_unsafe_link_is_text() -> None:
    out = TG.render(Reply.of(para(link("click", "javascript:alert(1)")))).messages[0]
    assert "<a " not in out and "javascript:alert(1)" in out


def test_discord_mentions_and_markdown_neutered() -> None:
    r = Reply.of(para("@everyone @here <@123> **bold** `x` [a](http://x)"))
    out = DC.render(r).messages[0]
    assert "@everyone" not in out and "@here" not in out
    assert "<@123>" not in out
    assert "**bold**" not in out


def test_discord_code_cannot_close_its_fence() -> None:
    out = DC.render(Reply.of(codeblock("a```b\n```\n@everyone", "python"))).messages[0]
    assert out.startswith("```python\n") and out.endswith("\n```")
    assert out.count("```") == 2


def test_discord_backtick_runs_cannot_close_the_fence() -> None:
    for ticks in ("```", "````", "`````", "``````"):
        out = DC.render(Reply.of(codeblock(f"a{ticks}\n# hi [x](https://evil.example)"))).messages[
            0
        ]
        assert out.count("```") == 2 and out.endswith("\n```"), ticks


def test_console_strips_terminal_escapes() -> None:
    out = CON.render(Reply.of(para("a\x1b[2Jb\x00c"), codeblock("\x1b]0;pwned\x07x"))).messages[0]
    assert "\x1b" not in out and "\x00" not in out and "\x07" not in out


def test_long_code_block_splits_into_closed_blocks() -> None:
    code = "\n".join(f"line {i} " + "x" * 50 for i in range(200))
    rendered = DC.render(Reply.of(codeblock(code)))
    assert 1 < len(rendered.messages) <= DC.max_messages or rendered.files
    for m in rendered.messages:
        assert units(m) <= DC.limit
        assert m.count("```") % 2 == 0


def test_too_long_becomes_attachment_with_everything() -> None:
    code = "\n".join(f"row {i}" for i in range(5000))
    rendered = TG.render(Reply.of(para("result:"), codeblock(code)))
    assert len(rendered.messages) == 1
    assert rendered.files and rendered.files[0].filename == "reply.txt"
    assert "row 4999" in rendered.files[0].data.decode()
    assert valid_telegram_html(rendered.messages[0])


def test_one_huge_line_is_split() -> None:
    rendered = TG.render(Reply.of(codeblock("y" * 9000)))
    assert all(units(m) <= 4096 for m in rendered.messages)
    assert (
        "".join(m.replace("<pre>", "").replace("</pre>", "") for m in rendered.messages).count("y")
        == 9000
    )


def test_emoji_counted_in_utf16_units() -> None:
    rendered = DC.render(Reply.of(para("🐍" * 1500)))  # 3000 UTF-16 units
    assert len(rendered.messages) == 2
    assert all(units(m) <= 2000 for m in rendered.messages)


def test_existing_files_kept_and_empty_reply_has_text() -> None:
    att = Attachment(b"x", "a.txt")
    assert TG.render(Reply(files=(att,))).files == (att,)
    assert TG.render(Reply()).messages == ("(empty reply)",)


def test_plain_text_numbered_list() -> None:
    txt = plain_text(Reply.of(BulletList(((Span("a"),), (Span("b"),)), numbered=True)))
    assert "1. a" in txt and "2. b" in txt


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=3000) | st.sampled_from(
    ["@everyone", "<b>", "```", "&amp;", "\x00", "\u202e", "*_~`|>", "<@&123>", "🐍" * 700]
)
inlines = st.builds(Span, texts, st.sampled_from(["plain", "bold", "italic", "code"])) | st.builds(
    Link, texts, st.sampled_from(["https://example.org/a_b", "javascript:x", "tg://user?id=1"])
)
blocks = st.one_of(
    st.builds(Paragraph, st.tuples(inlines, inlines) | st.tuples(inlines)),
    st.builds(CodeBlock, texts, st.sampled_from(["", "python", "py<thon>"])),
    st.builds(
        BulletList, st.lists(st.tuples(inlines), min_size=1, max_size=5).map(tuple), st.booleans()
    ),
)
replies = st.builds(Reply, st.lists(blocks, max_size=6).map(tuple), title=st.none() | texts)


@settings(max_examples=150, deadline=None)
@given(replies)
def test_renderers_never_raise_and_never_exceed_limits(reply: Reply) -> None:
    for r in (TG, DC, CON):
        out = r.render(reply)
        assert 1 <= len(out.messages) <= r.max_messages
        for m in out.messages:
            assert units(m) <= r.limit
            assert "\x00" not in m
        if r is TG:
            assert all(valid_telegram_html(m) for m in out.messages)
        if r is DC:
            assert all(m.count("```") % 2 == 0 for m in out.messages)
            assert all("@everyone" not in m for m in out.messages)


@pytest.mark.parametrize(
    "renderer", [ConsoleRenderer(), TelegramRenderer(), DiscordRenderer()], ids=type
)
def test_bidi_overrides_and_invisible_characters_never_reach_a_chat(renderer: object) -> None:
    """U+202E (right-to-left override) would make "txt.exe" look like "exe.txt"; zero-width
    and other invisible characters hide text. Code output and user text lose them."""
    sneaky = "invoice\u202etxt.exe \u2066x\u2069 a\u200bb \ufeffz \u061cy"
    reply = Reply.of(para(sneaky), codeblock(sneaky), title=sneaky)
    rendered = "\n".join(renderer.render(reply).messages)  # type: ignore[attr-defined]
    for ch in ("\u202e", "\u2066", "\u2069", "\u200b", "\ufeff", "\u061c"):
        assert ch not in rendered
    assert "invoicetxt.exe" in rendered and "ab" in rendered
    assert clean_text(sneaky) == "invoicetxt.exe x ab z y"
