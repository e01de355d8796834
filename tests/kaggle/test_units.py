"""The Kaggle backend's pure parts: settings, status/duration parsing, the log, the result file,
and the client's reading of odd answers (against the fake on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.kernels.kaggle.client import (
    ApiErrorKind,
    KaggleApiError,
    KaggleClient,
    SaveResult,
    normalise_status,
    parse_duration,
    retry_after_s,
)
from bot.kernels.kaggle.runner import KaggleInfo
from bot.kernels.kaggle.script import build_script, parse_log, parse_result, plot_index
from bot.kernels.kaggle.settings import KaggleSettings
from bot.text import duration
from tests.fakes.kaggle_api import KaggleFake, kaggle_log


def test_settings_are_off_until_token_and_consent() -> None:
    assert not KaggleSettings().enabled
    assert "no Kaggle API token" in (KaggleSettings().disabled_reason or "")
    with_token = KaggleSettings(token="KGAT_x")  # type: ignore[arg-type]
    assert not with_token.enabled and "accept_risk" in (with_token.disabled_reason or "")
    assert KaggleSettings(token="KGAT_x", accept_risk=True).enabled  # type: ignore[arg-type]
    assert "KGAT_x" not in repr(with_token)


def test_settings_token_file(tmp_path: Path) -> None:
    path = tmp_path / "access_token"
    path.write_text("KGAT_from_file\n")
    s = KaggleSettings(token_file=path, accept_risk=True)
    assert s.enabled and s.read_token() == "KGAT_from_file"
    assert s.secret_values() == ["KGAT_from_file"]
    assert KaggleSettings(token_file=tmp_path / "missing", accept_risk=True).secret_values() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"token": "a", "token_file": "/x"},
        {"max_concurrent": 0},
        {"poll_initial_s": 60, "poll_max_s": 30},
        {"base_url": "ftp://x"},
        {"slug_prefix": "Bad Prefix"},
        {"accelerator": "T4; rm -rf"},
        {"orphan_after_s": 10},
        {"nonsense": 1},
    ],
)
def test_settings_reject_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        KaggleSettings(**bad)  # type: ignore[arg-type]


def test_session_timeout_includes_start_up() -> None:
    assert KaggleSettings(wall_s=600, startup_grace_s=120).session_timeout_s(299.2) == 420


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("RUNNING", "running"),
        ("running", "running"),
        ("CANCEL_ACKNOWLEDGED", "cancelacknowledged"),
        ("cancelAcknowledged", "cancelacknowledged"),
        ("KERNEL_WORKER_STATUS_COMPLETE", "complete"),
        ("Error", "error"),
        ("", "unknown"),
        ("<html>", "unknown"),
        (None, "unknown"),
    ],
)
def test_status_names_are_normalised(raw: object, state: str) -> None:
    assert normalise_status(raw) == state


def test_durations_and_retry_after() -> None:
    assert parse_duration("151.500s") == 151.5
    assert parse_duration(30) == 30.0
    assert parse_duration("soon") is None and parse_duration(True) is None
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_s("garbage") is None and retry_after_s(None) is None


def test_capacity_message() -> None:
    assert SaveResult(error="Maximum batch GPU session count of 2 reached.").capacity
    assert not SaveResult(error="Notebook title is too short").capacity
    assert not SaveResult().capacity


def test_log_split_into_streams_merged_and_capped() -> None:
    raw = kaggle_log(
        [("stdout", "a\n"), ("stdout", "b\n"), ("stderr", "warn\n"), ("stdout", "50%\r100%\n")]
    )
    log = parse_log(raw, 1000)
    assert log.chunks == (("stdout", "a\nb\n"), ("stderr", "warn\n"), ("stdout", "100%\n"))
    assert not log.truncated
    capped = parse_log(kaggle_log([("stdout", "x" * 100)]), 10)
    assert capped.chunks == (("stdout", "x" * 10),) and capped.truncated


def test_log_cut_short_or_not_json() -> None:
    raw = kaggle_log([("stdout", "one\n"), ("stderr", "two\n"), ("stdout", "three\n")])
    cut = raw[: raw.rindex("three") - 5]  # the array is cut inside the last entry
    assert parse_log(cut, 1000).chunks == (("stdout", "one\n"), ("stderr", "two\n"))
    assert parse_log("plain text\n", 1000).chunks == (("stdout", "plain text\n"),)
    assert parse_log('[1, 2, {"data": 3}]', 1000).chunks == ()
    assert parse_log("", 1000).chunks == ()


def test_result_file_parsing() -> None:
    ok = parse_result(json.dumps({"ok": True, "value": "42", "figures": 2}).encode(), 100)
    assert ok is not None and ok.ok and ok.value == "42" and ok.figures == 2
    err = parse_result(json.dumps({"ok": False, "evalue": "x" * 5000}).encode(), 100)
    assert err is not None and err.ename == "Error" and len(err.evalue) == 2000
    assert parse_result(b"not json", 100) is None
    assert parse_result(b'{"ok": "yes"}', 100) is None
    assert parse_result(b"[]", 100) is None


def test_plot_names() -> None:
    assert plot_index("nbhelp_plot_3.png") == 3
    assert plot_index("nbhelp_plot_3.png.exe") is None
    assert plot_index("../nbhelp_plot_1.png") is None


def test_the_script_holds_the_code_only_as_base64() -> None:
    code = '"""\nimport os; os.system("x")  # \'\'\' """'
    script = build_script(code, max_images=4)
    assert code not in script and "os.system" not in script
    compile(script, "script.py", "exec")  # valid Python whatever the code holds


def test_human_durations() -> None:
    assert duration(40) == "40 s"
    assert duration(300) == "5 min"
    assert duration(3 * 3600 + 20 * 60) == "3 h 20 min"
    assert duration(-5) == "0 s"


def test_info_line() -> None:
    info = KaggleInfo(True, None, "NvidiaTeslaT4", 1, 3, 2, 600, 30, 25)
    assert info.describe().startswith(
        "Kaggle T4 (batch, no state between runs): 1/2 running, 3 queued"
    )
    off = KaggleInfo(
        False, "no Kaggle API token is configured", "NvidiaTeslaT4", 0, 0, 2, 600, 30, 25
    )
    assert off.describe() == "Kaggle GPU: off (no Kaggle API token is configured)"


async def test_client_classifies_odd_answers(fake: KaggleFake) -> None:
    settings = KaggleSettings(base_url=fake.url, token=fake.token, retries=0)  # type: ignore[arg-type]
    client = KaggleClient(settings, fake.token)
    try:
        fake.throttle("GetKernel", 1, status=429, retry_after=3)
        with pytest.raises(KaggleApiError) as err:
            await client.call("GetKernel", {"userName": "x", "kernelSlug": "y"})
        assert err.value.kind is ApiErrorKind.THROTTLED and err.value.retry_after == 3
        assert err.value.transient
        with pytest.raises(KaggleApiError) as err:
            await client.call("GetKernel", {"userName": "x", "kernelSlug": "y"})
        assert err.value.kind is ApiErrorKind.NOT_FOUND and not err.value.transient
        assert await client.kernel_exists("x", "y") is False
        with pytest.raises(KaggleApiError) as err:
            await client.call("NoSuchMethod", {})
        assert err.value.kind is ApiErrorKind.NOT_FOUND
        small = KaggleClient(settings.model_copy(update={"max_response_bytes": 10_000}), fake.token)
        fake.quota = {"gpuQuota": {"timeUsed": "1s", "pad": "x" * 20_000}}
        with pytest.raises(KaggleApiError) as err:
            await small.quota()
        assert err.value.kind is ApiErrorKind.TOO_LARGE
        await small.aclose()
        fake.quota = {"gpuQuota": {"timeUsed": "60s", "totalTimeAllowed": "108000s"}}
        quota = await client.quota()
        assert quota is not None and quota.left_s == 108000 - 60 and quota.refresh_at is None
        fake.quota = {"somethingElse": 1}
        assert await client.quota() is None
        with pytest.raises(KaggleApiError) as err:
            await client.download("file:///etc/passwd", 100)
        assert err.value.kind is ApiErrorKind.REJECTED
    finally:
        await client.aclose()


async def test_client_refused_token(fake: KaggleFake) -> None:
    settings = KaggleSettings(base_url=fake.url, token="KGAT_nope", retries=3)  # type: ignore[arg-type]
    client = KaggleClient(settings, "KGAT_nope")
    try:
        with pytest.raises(KaggleApiError) as err:
            await client.session_status("x", "y")
        assert err.value.kind is ApiErrorKind.AUTH and err.value.status == 401
        assert client.stats.requests["GetKernelSessionStatus"] == 1  # not retried
        assert "KGAT_nope" not in str(err.value)
    finally:
        await client.aclose()
