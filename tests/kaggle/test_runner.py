"""KaggleRunner against the fake Kaggle API: every quirk, and no run lost, doubled or left behind.

Every test ends with the same invariants (``assert_clean``): each run started exactly one
session on Kaggle, every kernel pushed is deleted, and the ledger has nothing open.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial

import pytest

from bot.kernels.errors import (
    Busy,
    GpuBudgetExceeded,
    KaggleDisabled,
    KaggleRejected,
    KaggleUnavailable,
)
from bot.kernels.kaggle import KaggleRunner, KaggleSettings, ledger
from bot.kernels.models import ErrorOutput, ImageOutput, ResultOutput, RunStatus, StreamOutput
from bot.store import Store
from tests.fakes.kaggle_api import KaggleFake, Scenario, png
from tests.kaggle.conftest import T0, FakeClock

Make = Callable[..., KaggleRunner]


def signal_on(text: str) -> tuple[asyncio.Event, Callable[[str], Awaitable[None]]]:
    """An on_progress callback that sets an event when a progress line contains ``text``."""
    event = asyncio.Event()

    async def on_progress(line: str) -> None:
        if text in line:
            event.set()

    return event, on_progress


def result_file(**data: object) -> bytes:
    return json.dumps({"ok": True, "figures": 0, **data}).encode()


async def assert_clean(fake: KaggleFake, store: Store, *, runs: int) -> None:
    """No run lost or doubled, nothing left running or undeleted."""
    started = [k for k in fake.kernels.values() if k.sessions]
    assert fake.sessions_started == runs, f"{fake.sessions_started} sessions for {runs} runs"
    assert all(len(k.sessions) == 1 for k in started), "a slug was pushed twice"
    assert fake.live_kernels() == [], f"kernels left on Kaggle: {fake.live_kernels()}"
    assert fake.active() == fake.external_sessions
    assert await store.call(ledger.open_slugs) == []


async def test_a_run_returns_outputs_and_deletes_its_kernel(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.script(
        Scenario(
            statuses=["QUEUED", "QUEUED", "RUNNING", "RUNNING", "RUNNING", "COMPLETE"],
            log=[("stdout", "cuda: True\n"), ("stderr", "warning: slow\n"), ("stdout", "done\n")],
            files={
                "nbhelp_result.json": result_file(value="42", figures=1),
                "nbhelp_plot_1.png": png(b"plot"),
                "submission.csv": b"id,x\n",  # the user's own file: not downloaded
            },
        )
    )
    progress: list[str] = []

    async def on_progress(text: str) -> None:
        progress.append(text)

    runner = make_runner()
    result = await runner.run(
        "tg:7", "import torch\nprint(torch.cuda.is_available())", on_progress=on_progress
    )

    assert result.status is RunStatus.OK
    assert result.outputs == (
        StreamOutput("stdout", "cuda: True\n"),
        StreamOutput("stderr", "warning: slow\n"),
        StreamOutput("stdout", "done\n"),
        ResultOutput("42"),
        ImageOutput(png(b"plot")),
    )
    assert any("no variables carry over" in n for n in result.notices)
    assert result.duration_s > 0
    assert progress[0] == "⏳ Queued on Kaggle's free GPU — this takes minutes, not seconds."
    assert "▶ Running on a T4 now." in progress
    assert any(re.fullmatch(r"⏳ Running on a T4, \d+ s so far\.", p) for p in progress)
    # what was pushed
    body = fake.pushes[0]
    owner, slug = body["slug"].split("/")
    assert owner == fake.username and slug.startswith("nbhelp-run-") and body["newTitle"] == slug
    assert body["isPrivate"] is True and body["enableInternet"] is False
    assert body["machineShape"] == "NvidiaTeslaT4" and body["kernelType"] == "script"
    assert body["sessionTimeoutSeconds"] == 600 + 120
    assert fake.downloads and len(fake.downloads) == 2  # result + plot, not submission.csv
    assert fake.signed_auth_headers == []  # the token never goes to signed URLs
    assert fake.deleted == [slug]
    # GPU time charged to the user
    used = await store.call(lambda db: ledger.used_seconds(db, 0, "tg:7"))
    assert used == pytest.approx(result.duration_s)
    await assert_clean(fake, store, runs=1)


async def test_html_throttling_pages_are_retried_honouring_retry_after(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.throttle("IntrospectToken", 1, status=503)
    fake.throttle("GetKernelSessionStatus", 2, status=429, retry_after=17)
    fake.throttle("GetKernelSessionStatus", 1, status=502)
    fake.throttle("ListKernelSessionOutput", 1, status=503)
    fake.throttle("DeleteKernel", 2, status=429, retry_after=9)
    runner = make_runner()
    result = await runner.run("u1", "print('hello')")
    assert result.status is RunStatus.OK
    assert result.outputs[0] == StreamOutput("stdout", "hello\n")
    assert 17 in clock.sleeps and 9 in clock.sleeps  # Retry-After was waited for
    assert runner.client.stats.retries >= 7
    await assert_clean(fake, store, runs=1)


async def test_a_push_accepted_but_answered_5xx_is_found_not_pushed_again(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.accept_then_fail(1, status=502)
    runner = make_runner()
    result = await runner.run("u1", "print('once')")
    assert result.status is RunStatus.OK
    assert runner.stats.unclear_pushes == 1 and runner.stats.adopted_pushes == 1
    assert len(fake.pushes) == 1  # reconciled: not pushed again
    await assert_clean(fake, store, runs=1)


async def test_a_push_refused_with_5xx_is_pushed_again_once(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.fail_push(2, status=503)
    fake.throttle("GetKernel", 1, status=429)  # the look-up itself is throttled once
    runner = make_runner()
    result = await runner.run("u1", "print(1)")
    assert result.status is RunStatus.OK
    assert runner.stats.unclear_pushes == 2 and runner.stats.adopted_pushes == 0
    await assert_clean(fake, store, runs=1)


async def test_unclear_pushes_give_up_cleanly(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.fail_push(10, status=503)
    runner = make_runner(push_attempts=3)
    with pytest.raises(KaggleUnavailable) as err:
        await runner.run("u1", "print(1)")
    assert "try again later" in err.value.user_message
    await assert_clean(fake, store, runs=0)


async def test_a_stale_finished_status_before_queued_is_ignored(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    # If the stale COMPLETE were believed, the output listing would still be empty.
    fake.script(Scenario(stale_first=3, log=[("stdout", "real output\n")]))
    runner = make_runner()
    result = await runner.run("u1", "print('real output')")
    assert result.status is RunStatus.OK
    assert result.outputs == (StreamOutput("stdout", "real output\n"),)
    assert runner.stats.stale_ignored == 3
    await assert_clean(fake, store, runs=1)


async def test_a_run_that_stays_running_is_stopped_by_our_deadline(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.script(Scenario(statuses=["QUEUED", "RUNNING"]))  # RUNNING forever
    runner = make_runner(wall_s=300, startup_grace_s=60)
    start = clock()
    result = await runner.run("u1", "while True: pass")
    assert result.status is RunStatus.TIMEOUT
    assert "longer than 5 min" in result.notices[0]
    assert clock() - start < 300 + 60 + 5 + 60  # stopped at the deadline, not later
    slug = fake.deleted[0]
    assert fake.kernels[slug].sessions[0].cancelled  # deleting stopped the session
    used = await store.call(lambda db: ledger.used_seconds(db, 0, "u1"))
    assert 300 <= used <= 300 + 60 + 35  # charged for the time it held the GPU
    await assert_clean(fake, store, runs=1)


async def test_a_run_never_started_by_kaggle_times_out_in_the_queue(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.script(Scenario(statuses=["QUEUED"]))
    runner = make_runner(queue_timeout_s=600)
    result = await runner.run("u1", "print(1)")
    assert result.status is RunStatus.TIMEOUT
    assert "did not start the run within 10 min" in result.notices[0]
    assert await store.call(lambda db: ledger.used_seconds(db, 0, "u1")) == 0
    await assert_clean(fake, store, runs=1)


async def test_the_session_count_cap_waits_and_retries_with_a_fresh_slug(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.external_sessions = 2  # the account owner's own notebooks hold both GPU sessions
    progress: list[str] = []

    async def on_progress(text: str) -> None:
        progress.append(text)
        if "in use" in text:
            fake.external_sessions = 0  # ... and they finish while we wait

    runner = make_runner()
    result = await runner.run("u1", "print(1)", on_progress=on_progress)
    assert result.status is RunStatus.OK
    assert runner.stats.capacity_refusals == 1
    assert len(fake.pushes) == 2
    first, second = (p["slug"].split("/")[1] for p in fake.pushes)
    assert first != second  # never the same slug twice
    assert any("GPU sessions of the bot's Kaggle account are in use" in p for p in progress)
    assert 60 <= max(clock.sleeps) <= 72  # capacity_wait_s, jittered
    await assert_clean(fake, store, runs=1)


async def test_the_session_count_cap_gives_up_after_the_queue_timeout(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.external_sessions = 2
    runner = make_runner(queue_timeout_s=300, capacity_wait_s=60)
    with pytest.raises(KaggleUnavailable) as err:
        await runner.run("u1", "print(1)")
    assert "all its sessions are in use" in err.value.user_message
    assert runner.stats.capacity_refusals >= 4
    await assert_clean(fake, store, runs=0)


async def test_outputs_from_signed_urls_with_one_oversized(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.script(
        Scenario(
            files={
                "nbhelp_result.json": result_file(figures=3),
                "nbhelp_plot_1.png": png(b"one"),
                "nbhelp_plot_3.png": b"<html>not a png</html>",
            },
            big_files={"nbhelp_plot_2.png": 50_000_000},
        )
    )
    runner = make_runner(max_image_bytes=100_000)
    result = await runner.run("u1", "plots")
    assert result.status is RunStatus.OK
    assert result.images == (png(b"one"),)
    assert result.images_dropped == 2  # the 50 MB one and the fake PNG
    assert runner.client.stats.download_bytes < 1_000_000  # stopped reading at the cap
    assert fake.signed_auth_headers == []
    await assert_clean(fake, store, runs=1)


async def test_the_bots_queue_shows_positions_and_never_exceeds_the_cap(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    runner = make_runner(max_concurrent=2)
    notes: dict[str, list[str]] = {}

    def progress_of(user: str) -> Callable[[str], object]:
        async def on_progress(text: str) -> None:
            notes.setdefault(user, []).append(text)

        return on_progress

    users = [f"u{i}" for i in range(5)]
    results = await asyncio.gather(
        *(runner.run(u, f"print('{u}')", on_progress=progress_of(u)) for u in users)  # type: ignore[arg-type]
    )
    assert [r.outputs for r in results] == [(StreamOutput("stdout", "hello\n"),)] * 5
    assert fake.max_active <= 2
    waited = [t for u in users for t in notes[u] if "number" in t]
    assert any("you are number 1 in line" in t for t in waited)
    assert any("you are number 3 in line" in t for t in waited)
    await assert_clean(fake, store, runs=5)


async def test_one_gpu_run_per_user_at_a_time(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.script(Scenario(statuses=["QUEUED"] * 3 + ["COMPLETE"]))
    runner = make_runner()
    queued, on_progress = signal_on("Queued on Kaggle")
    first = asyncio.create_task(runner.run("u1", "print(1)", on_progress=on_progress))
    await queued.wait()
    with pytest.raises(Busy):
        await runner.run("u1", "print(2)")
    assert (await first).ok
    await assert_clean(fake, store, runs=1)


async def test_kernels_left_by_a_previous_process_are_deleted_at_start(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    # A previous process pushed two kernels and died: one running, one never confirmed.
    fake.script(Scenario(statuses=["RUNNING"]))
    crashed = make_runner()
    await crashed.start()
    owner = fake.username
    now = clock()
    for slug in ("nbhelp-run-aaaaaaaaaaaa", "nbhelp-run-bbbbbbbbbbbb"):
        await store.call(
            partial(ledger.record, slug=slug, owner=owner, user_key="u9", instance="dead", now=now)
        )
    await crashed.client.save_kernel(
        owner,
        "nbhelp-run-aaaaaaaaaaaa",
        title="nbhelp-run-aaaaaaaaaaaa",
        text="x",
        accelerator="NvidiaTeslaT4",
        session_timeout_s=700,
    )
    await store.call(
        lambda db: ledger.set_state(db, "nbhelp-run-aaaaaaaaaaaa", ledger.PUSHED, clock())
    )
    assert fake.active() == 1
    clock.now += 600  # longer than orphan_after_s: nobody reports for them any more
    runner = make_runner()
    await runner.start()
    assert runner.stats.reaped == 2  # the never-confirmed one was absent (404): fine
    assert fake.live_kernels() == [] and fake.active() == 0
    assert await store.call(ledger.open_slugs) == []


async def test_a_live_runners_kernels_are_not_reaped_by_another_process(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.script(Scenario(statuses=["QUEUED"] * 4 + ["RUNNING"] * 4 + ["COMPLETE"]))
    bot = make_runner()
    one_shot = make_runner()  # e.g. `python -m bot ask "/run --gpu …"` at the same time
    running, on_progress = signal_on("Running on a T4 now")
    run = asyncio.create_task(bot.run("u1", "print(1)", on_progress=on_progress))
    await running.wait()
    await one_shot.start()
    assert one_shot.stats.reaped == 0
    assert (await run).ok
    await assert_clean(fake, store, runs=1)


async def test_a_failed_deletion_is_retried_by_the_reaper(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.throttle("DeleteKernel", 6 + 1, status=503)  # every retry of the run's deletion fails
    runner = make_runner(retries=5)
    assert (await runner.run("u1", "print(1)")).ok
    assert runner.stats.delete_failures == 1
    assert len(fake.live_kernels()) == 1
    assert await runner.reap() == 1
    await assert_clean(fake, store, runs=1)


async def test_cancelling_a_run_deletes_its_kernel(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.script(Scenario(statuses=["QUEUED", "RUNNING"]))
    runner = make_runner()
    running, on_progress = signal_on("Running on a T4 now")
    run = asyncio.create_task(runner.run("u1", "while True: pass", on_progress=on_progress))
    await running.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await assert_clean(fake, store, runs=1)


async def test_closing_the_runner_stops_runs_and_deletes_their_kernels(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.script(Scenario(statuses=["RUNNING"]))
    runner = make_runner()
    running, on_progress = signal_on("Running on a T4 now")
    run = asyncio.create_task(runner.run("u1", "while True: pass", on_progress=on_progress))
    await running.wait()
    await runner.aclose()
    with pytest.raises(asyncio.CancelledError):
        await run
    await assert_clean(fake, store, runs=1)


async def test_user_daily_budget(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.script(Scenario(statuses=["QUEUED", "RUNNING", "RUNNING"]))  # RUNNING till the deadline
    runner = make_runner(user_daily_gpu_minutes=10, wall_s=600, min_run_s=60)
    first = await runner.run("u1", "long()")
    assert first.status is RunStatus.TIMEOUT
    with pytest.raises(GpuBudgetExceeded) as err:
        await runner.run("u1", "again()")
    assert "10 GPU minutes for today" in err.value.user_message
    assert "00:00 UTC" in err.value.user_message
    assert (await runner.run("u2", "print(1)")).ok  # someone else still may
    await assert_clean(fake, store, runs=2)


async def test_a_run_gets_at_most_the_budget_left(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    await store.call(lambda db: ledger.record(db, "old", "o", "u1", "x", clock()))
    await store.call(lambda db: ledger.charge(db, "old", 25 * 60, "complete", clock()))
    await store.call(lambda db: ledger.set_state(db, "old", ledger.DELETED, clock()))
    runner = make_runner(user_daily_gpu_minutes=30, wall_s=600)
    assert (await runner.run("u1", "print(1)")).ok
    assert fake.pushes[0]["sessionTimeoutSeconds"] == 5 * 60 + 120


async def test_deployment_weekly_budget(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    await store.call(lambda db: ledger.record(db, "old", "o", "someone", "x", clock() - 3 * 86400))
    await store.call(lambda db: ledger.charge(db, "old", 2 * 3600, "complete", clock() - 3 * 86400))
    await store.call(lambda db: ledger.set_state(db, "old", ledger.DELETED, clock()))
    runner = make_runner(weekly_gpu_hours=2)
    with pytest.raises(GpuBudgetExceeded) as err:
        await runner.run("u1", "print(1)")
    assert "for the week (2 h) is used up" in err.value.user_message
    assert "More frees up from Sun" in err.value.user_message  # 7 days after that run
    assert fake.pushes == []


async def test_the_accounts_quota_is_read_before_pushing(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.quota = {
        "gpuQuota": {"timeUsed": "107950.5s", "timeReserved": "0s", "totalTimeAllowed": "108000s"},
        "quotaRefreshTime": "2026-01-10T08:00:00Z",
    }
    runner = make_runner()
    with pytest.raises(GpuBudgetExceeded) as err:
        await runner.run("u1", "print(1)")
    assert "no GPU quota left this week" in err.value.user_message
    assert "Sat 08:00 UTC" in err.value.user_message
    assert fake.pushes == []
    fake.quota = None  # an API without the call: the quota is simply unknown
    runner2 = make_runner(quota_cache_s=0)
    assert (await runner2.run("u1", "print(1)")).ok


async def test_disabled_without_the_operators_consent(
    make_runner: Make, make_settings: Callable[..., KaggleSettings], fake: KaggleFake
) -> None:
    runner = make_runner(make_settings(accept_risk=False))
    with pytest.raises(KaggleDisabled):
        await runner.run("u1", "print(1)")
    assert not runner.info().enabled and "accept_risk" in (runner.info().reason or "")
    assert sum(fake.calls.values()) == 0


async def test_a_refused_token_is_a_clear_message_without_the_token(
    fake: KaggleFake, make_runner: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = make_runner(token="KGAT_wrong_secret_value")
    with pytest.raises(KaggleUnavailable) as err:
        await runner.run("u1", "print(1)")
    assert "refused this bot's API token" in err.value.user_message
    assert "KGAT_wrong_secret_value" not in str(err.value) + err.value.user_message
    assert "KGAT_wrong_secret_value" not in caplog.text


async def test_kaggle_refusing_the_push_is_shown_cleaned(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    runner = make_runner(accelerator="NvidiaTeslaP100")  # retired: the fake refuses it
    with pytest.raises(KaggleRejected) as err:
        await runner.run("u1", "print(1)")
    assert "Kaggle refused the run" in err.value.user_message
    assert "NvidiaTeslaP100" in err.value.user_message
    await assert_clean(fake, store, runs=0)


async def test_the_token_never_reaches_the_pushed_code_or_the_logs(
    fake: KaggleFake, make_runner: Make, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.throttle("GetKernelSessionStatus", 1, status=429)
    runner = make_runner()
    result = await runner.run("u1", "import os; print(os.environ)")
    pushed = json.dumps(fake.pushes)
    assert fake.token not in pushed
    inner = re.search(r'b64decode\("([^"]+)"\)', fake.pushes[0]["text"])
    assert inner and base64.b64decode(inner.group(1)).decode() == "import os; print(os.environ)"
    assert fake.token not in caplog.text
    assert fake.token not in repr(result)


async def test_a_hostile_log_and_result_are_capped_and_cleaned(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    flood = "A" * 500_000
    fake.script(
        Scenario(
            log=[("stdout", "\x1b[31mred\x1b[0m \x1b]0;title\x07ok\r\n"), ("stdout", flood)],
            files={
                "nbhelp_result.json": json.dumps(
                    {"ok": False, "ename": "\x1b[2JBoom", "evalue": "x", "traceback": "tb\x00"}
                ).encode()
            },
        )
    )
    runner = make_runner(output_bytes=10_000)
    result = await runner.run("u1", "boom()")
    assert result.status is RunStatus.ERROR
    text = result.outputs[0]
    assert isinstance(text, StreamOutput) and text.text.startswith("red ok\n")
    assert "\x1b" not in result.text and "\x00" not in result.text
    assert sum(len(o.text) for o in result.outputs if isinstance(o, StreamOutput)) <= 10_000
    assert result.output_truncated
    assert result.error == ErrorOutput("Boom", "x", "tb")
    await assert_clean(fake, store, runs=1)


async def test_a_log_that_is_not_json_and_no_result_file(
    fake: KaggleFake, make_runner: Make, store: Store
) -> None:
    fake.script(
        Scenario(raw_log="Killed\n", files={}, statuses=["RUNNING", "ERROR"], failure="OOM")
    )
    runner = make_runner()
    result = await runner.run("u1", "x = bytearray(10**12)")
    assert result.status is RunStatus.CRASHED
    assert result.outputs == (StreamOutput("stdout", "Killed\n"),)
    assert any("failed: OOM" in n for n in result.notices)
    await assert_clean(fake, store, runs=1)


@pytest.mark.slow
async def test_the_wrapper_runs_for_real(fake: KaggleFake, make_runner: Make, store: Store) -> None:
    """The pushed script, run by a real Python: streams, the last value, a plot, a traceback."""
    pytest.importorskip("matplotlib")
    fake.script(Scenario(execute=True), Scenario(execute=True))
    runner = make_runner()
    code = "import matplotlib.pyplot as plt\nprint('héllo 😀')\nplt.plot([1, 2, 3])\n6 * 7\n"
    ok = await runner.run("u1", code)
    assert ok.status is RunStatus.OK, ok
    assert StreamOutput("stdout", "héllo 😀\n") in ok.outputs
    assert ResultOutput("42") in ok.outputs
    assert len(ok.images) == 1 and ok.images[0].startswith(b"\x89PNG")
    bad = await runner.run("u1", "def f(x):\n    return 1 / x\nprint('before')\nf(0)\n")
    assert bad.status is RunStatus.ERROR
    assert bad.error is not None and bad.error.ename == "ZeroDivisionError"
    assert 'File "<cell>", line 2, in f' in bad.error.traceback
    assert bad.outputs[0] == StreamOutput("stdout", "before\n")
    await assert_clean(fake, store, runs=2)


async def test_a_run_whose_status_calls_keep_failing_is_not_reaped_meanwhile(
    fake: KaggleFake,
    make_runner: Make,
    make_settings: Callable[..., KaggleSettings],
    store: Store,
    clock: FakeClock,
) -> None:
    fake.throttle("GetKernelSessionStatus", 40, status=503)  # ~10 min of failing status calls
    other = make_runner()  # another process sharing the database, reaping as it should
    await other.start()
    reaped_during: list[int] = []

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now > T0 + 600 and not reaped_during:
            reaped_during.append(await other.reap())

    runner = KaggleRunner(make_settings(retries=0), store, clock=clock, sleep=sleep)
    try:
        result = await runner.run("u1", "print(1)")
    finally:
        await runner.aclose()
    assert reaped_during == [0]
    assert result.ok
    await assert_clean(fake, store, runs=1)


async def test_a_run_finished_between_two_polls_is_not_held_as_stale(
    fake: KaggleFake, make_runner: Make, store: Store, clock: FakeClock
) -> None:
    fake.script(Scenario(statuses=["COMPLETE"], log=[("stdout", "quick\n")]))
    runner = make_runner(stale_status_grace_s=600)
    start = clock()
    result = await runner.run("u1", "print('quick')")
    assert result.outputs == (StreamOutput("stdout", "quick\n"),)
    assert runner.stats.stale_ignored == 0
    assert clock() - start < 60  # the result file proved it real: no waiting out the grace
    assert fake.calls["ListKernelSessionOutput"] == 1  # the early listing is reused
    await assert_clean(fake, store, runs=1)
