"""Pure parts of the adapter: reply → messages, option joining, autocomplete sources."""

from __future__ import annotations

from bot.adapters.discord.commands import join_args, needs_choices, platform_choices
from bot.adapters.discord.replies import MAX_FILES, TONE_COLOURS, build
from bot.core.models import Attachment, Image, Reply, codeblock, para
from knowledge.loader import KnowledgeBase
from tests.helpers import REGISTRY


def test_plain_reply_is_content_without_embed() -> None:
    (out,) = build(Reply.of(para("hello **world**")))
    assert out.content == "hello \\*\\*world\\*\\*" and out.embed is None and not out.files
    assert out.kwargs()["allowed_mentions"].to_dict() == {"parse": []}


def test_titled_reply_is_an_embed_coloured_by_tone() -> None:
    for tone, colour in TONE_COLOURS.items():
        (out,) = build(Reply.of(para("body"), title="A title", tone=tone))  # type: ignore[arg-type]
        assert out.content is None and out.embed is not None
        assert out.embed.title == "A title" and out.embed.description == "body"
        assert out.embed.colour is not None and out.embed.colour.value == colour
    (out,) = build(Reply(title="x" * 400))
    assert out.embed is not None and len(out.embed.title or "") == 256
    assert out.embed.title.endswith("…")  # type: ignore[union-attr]
    assert out.embed.description is None  # a title-only reply has no body


def test_long_embed_reply_becomes_several_embeds_within_limits() -> None:
    lines = "\n".join(f"line {i} " + "y" * 70 for i in range(120))  # ~9500 chars of code
    outs = build(Reply.of(codeblock(lines), title="Big", tone="warn"))
    assert len(outs) >= 3
    assert outs[0].embed is not None and outs[0].embed.title == "Big"
    for out in outs:
        assert out.embed is not None
        assert len(out.embed.description or "") <= 4096
        assert len(out.embed.title or "") + len(out.embed.description or "") <= 6000


def test_attachments_pack_within_count_and_size_limits() -> None:
    images = tuple(Image(b"i" * 100, f"plot {i}.png") for i in range(12))
    outs = build(Reply.of(para("plots"), images=images))
    assert [len(o.files) for o in outs] == [MAX_FILES, 2]
    assert outs[0].files[0].filename == "plot_0.png"

    files = tuple(Attachment(b"f" * 600, "out.csv") for _ in range(3))
    outs = build(Reply.of(para("data"), files=files), filesize_limit=1000)
    assert [len(o.files) for o in outs] == [1, 1, 1]
    assert [f.filename for o in outs for f in o.files] == ["out.csv", "out-1.csv", "out-2.csv"]


def test_an_embed_shows_its_first_image() -> None:
    (out,) = build(Reply.of(para("down"), title="Colab", images=(Image(b"png", "u p.png"),)))
    assert out.embed is not None and out.embed.image.url == "attachment://u_p.png"


def test_an_empty_reply_still_says_something() -> None:
    (out,) = build(Reply())
    assert out.content


def test_join_args_follows_the_registry_order() -> None:
    alt = REGISTRY.get("alternatives")
    assert alt is not None
    assert join_args(alt, {"needs": "gpu", "platform": "colab"}) == "colab gpu"
    assert join_args(alt, {"needs": "  offline ", "platform": None}) == "offline"
    assert join_args(alt, {}) == ""


def test_autocomplete_sources(kb: KnowledgeBase) -> None:
    assert [c.value for c in platform_choices(kb, "kag")] == ["kaggle"]
    everything = platform_choices(kb, "")
    assert len(everything) == min(25, len(kb.platforms))
    assert all(len(c.name) <= 100 and len(c.value) <= 100 for c in everything)
    several = [c.value for c in platform_choices(kb, "colab kag", several=True)]
    assert several == ["colab kaggle"]
    assert "colab" not in [c.value for c in platform_choices(kb, "colab ", several=True)]
    assert [c.value for c in needs_choices("")][:2] == ["gpu", "tpu"]
    assert "gpu tpu" in [c.value for c in needs_choices("gpu t")]
    assert needs_choices("zzz")[0].value == "zzz"  # keeps what the user typed
