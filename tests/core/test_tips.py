"""/tips and /report through the real core on a real SQLite file: known errors explained,
unknown ones answered honestly, and /report using the same matcher."""

from __future__ import annotations

import pytest

from bot.core.app import Core
from tests.conftest import Chat

WRONG_BEFORE = ("Studio Lab", "Codespaces", "Weak connection", "slow or costly connection")


@pytest.mark.parametrize(
    ("paste", "expect"),
    [
        (
            "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 11.17 GiB total "
            "capacity; 10.67 GiB already allocated; 2.81 MiB free; 185.39 MiB cached)",
            "Halve the batch size",
        ),
        ("Your session crashed after using all available RAM", "used all of the VM's RAM"),
        (
            "The kernel appears to have died. It will restart automatically.",
            "process behind the notebook stopped",
        ),
        (
            "ImportError: libGL.so.1: cannot open shared object file: No such file or directory",
            "opencv-python-headless",
        ),
        (
            "OSError: Could not find kaggle.json. Make sure it's located in /root/.kaggle.",
            "Create New Token",
        ),
        (
            "Your notebook tried to allocate more memory than is available. It has restarted.",
            "Kaggle restarted it",
        ),
    ],
)
async def test_issue_13_pastes_get_the_right_answer(chat: Chat, paste: str, expect: str) -> None:
    text = await chat.say(f"/tips {paste}")
    assert expect in text
    assert not any(w in text for w in WRONG_BEFORE)
    assert "install-package" not in text and "I don't know" not in text


async def test_answer_shows_source_and_what_is_unverified(chat: Chat) -> None:
    text = await chat.say(
        "/tips You have too many active sessions. Terminate an existing session to continue."
    )
    assert "Manage sessions" in text
    assert "Not verified:" in text and "15 minutes" in text
    assert "source: github.com" in text


async def test_unknown_error_says_so_and_what_to_check(chat: Chat) -> None:
    text = await chat.say("/tips KeyError: 'price'")
    assert "I don't know this one yet" in text
    assert "df.columns" in text  # the KeyError check
    assert "Keep your files" not in text and "/tips " not in text  # no unrelated tip


async def test_gpu_word_alone_does_not_pull_a_gpu_tip(chat: Chat) -> None:
    text = await chat.say(
        "/tips RuntimeError: CUDA error: device-side assert triggered\n"
        "CUDA kernel errors might be asynchronously reported at some other API call"
    )
    assert "I don't know this one yet" in text
    assert "CUDA out of memory" not in text and "Halve the batch size" not in text


async def test_cut_traceback_asks_for_the_last_lines(chat: Chat) -> None:
    text = await chat.say(
        '/tips Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n    model.fit(x)'
    )
    assert "stops before the error itself" in text


async def test_words_ids_and_vague_words(chat: Chat) -> None:
    assert "drive.mount" in await chat.say("/tips mount drive")
    assert "process behind the notebook stopped" in await chat.say("/tips kernel-died")
    vague = await chat.say("/tips quota")
    assert "which one?" in vague and "/tips kaggle-gpu-quota" in vague


async def test_tips_on_a_replied_message(chat: Chat) -> None:
    text = await chat.say(
        "/tips", replied_text="AssertionError: Torch not compiled with CUDA enabled"
    )
    assert "CPU-only build" in text


async def reports(core: Core, platform: str) -> int:
    return int((await core.ctx.service("monitor").verdict(platform)).reports.reports)


async def test_report_no_backend_is_explained_not_counted(core: Core) -> None:
    text = await Chat(core, user_id="ama").say("/report colab it says no backend")
    assert "No backend with GPU available" in text and "not an outage" in text.lower()
    assert await reports(core, "colab") == 0


async def test_report_known_error_of_any_platform_is_explained(core: Core) -> None:
    text = await Chat(core, user_id="kofi").say(
        "/report kaggle CUDA out of memory. Tried to allocate 2 GiB"
    )
    assert "Halve the batch size" in text
    assert await reports(core, "kaggle") == 0
    text = await Chat(core, user_id="esi").say(
        "/report colab Your session crashed after using all available RAM"
    )
    assert "used all of the VM's RAM" in text and await reports(core, "colab") == 0


async def test_report_of_wording_that_may_be_an_outage_counts_and_explains(core: Core) -> None:
    text = await Chat(core, user_id="yaw").say(
        "/report colab Sorry, no backends available. Please try again later."
    )
    assert "counted" in text and "not even a CPU one" in text
    assert await reports(core, "colab") == 1


async def test_report_plain_words_still_count(core: Core) -> None:
    assert "counted" in await Chat(core, user_id="abena").say("/report colab cannot connect")
    assert "counted" in await Chat(core, user_id="kwame").say(
        "/report kaggle restriction in your location"
    )
    assert await reports(core, "colab") == 1 and await reports(core, "kaggle") == 1


async def test_every_entry_fits_one_phone_sized_message(chat: Chat) -> None:
    from bot.core.render import DiscordRenderer, TelegramRenderer, units

    kb = chat.core.ctx.knowledge
    for entry in (*kb.messages, *kb.tips):
        reply = await chat.reply(f"/tips {entry.id}")
        for renderer in (TelegramRenderer(), DiscordRenderer()):
            out = renderer.render(reply)
            assert len(out.messages) == 1, entry.id
            assert units(out.messages[0]) <= min(renderer.limit, 2000), entry.id
