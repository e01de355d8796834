"""Telegram's text rules: the fake enforces them, the renderer and the fallbacks meet them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.telegram.outbound import sendable_texts
from bot.adapters.telegram.text import html_to_plain, is_chat_gone, is_parse_error, plain_caption
from bot.core.models import Reply, bold, bullets, code, codeblock, italic, link, para
from bot.core.render import TelegramRenderer
from tests.fakes.telegram_api import ApiError, parse_html, utf16


@pytest.mark.parametrize(
    "markup",
    [
        "<b>unclosed",
        "<b>a <i>b</b></i>",
        "<script>x</script>",
        "a < b",
        "</b>",
        "&nbsp;",
        "<br/>",
        "<b",
    ],
)
def test_fake_refuses_malformed_html(markup: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_html(markup)
    assert info.value.code == 400
    assert info.value.description.startswith("Bad Request: can't parse entities")


def test_fake_accepts_telegram_html() -> None:
    markup = (
        '<b>b</b> <i>i</i> <code>c</code> <pre><code class="language-python">x &lt; 1</code></pre>'
        ' <a href="https://e.org">e</a> &amp; &quot; &#128512; <tg-spoiler>s</tg-spoiler> a > b'
    )
    assert parse_html(markup) == 'b i c x < 1 e & " 😀 s a > b'


def test_html_to_plain() -> None:
    assert html_to_plain("<b>x</b> &lt;y&gt; &amp;") == "x <y> &"
    assert html_to_plain('see <a href="https://e.org">docs</a>') == "see docs (https://e.org)"
    assert html_to_plain('<a href="https://e.org">https://e.org</a>') == "https://e.org"
    assert html_to_plain("<b>broken <i>nesting</b>") == "broken nesting"
    assert html_to_plain("") == ""


def test_caption_is_cut_to_1024_units_and_never_pings() -> None:
    assert plain_caption("hi @everyone") == "hi @\u2060everyone"
    long = "😀" * 600  # 1200 UTF-16 units
    cut = plain_caption(long)
    assert utf16(cut) <= 1024 and cut.endswith("…")
    assert plain_caption("") == ""


def test_blank_messages_are_left_out() -> None:
    renderer = TelegramRenderer()
    assert sendable_texts(renderer.render(Reply.of(codeblock("  ")))) == ["(empty reply)"]
    reply = Reply.of(para("out:"), codeblock(""))
    assert [html_to_plain(t).strip() for t in sendable_texts(renderer.render(reply))] == ["out:"]


def test_error_classification() -> None:
    from telegram.error import BadRequest, Forbidden, NetworkError

    assert is_parse_error(BadRequest("Bad Request: can't parse entities: x"))
    assert not is_parse_error(BadRequest("Bad Request: message is too long"))
    assert is_chat_gone(Forbidden("Forbidden: bot was kicked from the group chat"))
    assert is_chat_gone(BadRequest("Bad Request: chat not found"))
    assert not is_chat_gone(BadRequest("Bad Request: message is too long"))
    assert not is_chat_gone(NetworkError("Bad Gateway"))


texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=300
)
inline = st.one_of(
    texts,
    texts.map(bold),
    texts.map(italic),
    texts.map(code),
    st.builds(link, texts, st.sampled_from(["https://e.org/?a=1&b=<2>", "javascript:x", "tg://x"])),
)
blocks = st.one_of(
    st.lists(inline, min_size=1, max_size=5).map(lambda parts: para(*parts)),
    st.lists(texts, min_size=1, max_size=5).map(lambda items: bullets(*items)),
    st.builds(codeblock, st.text(max_size=3000), st.sampled_from(["", "python", "c++ <x>"])),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(blocks, max_size=8), st.one_of(st.none(), texts))
def test_every_rendered_reply_is_accepted_by_telegram(blocks_: list, title: str | None) -> None:
    rendered = TelegramRenderer().render(Reply(blocks=tuple(blocks_), title=title))
    messages = sendable_texts(rendered)
    assert messages or rendered.files
    for message in messages:
        shown = parse_html(message)  # raises like Telegram on anything malformed
        assert utf16(shown) <= 4096 and utf16(message) <= 4096
        assert shown.strip()  # Telegram refuses empty text
