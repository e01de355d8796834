"""One settings system, checked at start: every key used, every bad key named, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import Settings, SettingsError, effective, load_settings, secret_values
from tests.helpers import process_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NBHELP_* or PORT from outside, and a working directory without a .env."""
    import os

    for key in list(os.environ):
        if key.startswith("NBHELP_") or key == "PORT":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def problems(**env: str) -> list[str]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        with pytest.raises(SettingsError) as err:
            load_settings()
    return err.value.problems


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"NBHELP_RUN__WALL_S": "-1"}, "NBHELP_RUN__WALL_S=-1: must be greater than 0"),
        (
            {"NBHELP_RUN__WALL_S": "1e9"},
            "NBHELP_RUN__WALL_S=1e9: must be less than or equal to 3600",
        ),
        ({"NBHELP_RUN__WALL_S": "ten"}, "NBHELP_RUN__WALL_S=ten: must be a valid number"),
        ({"NBHELP_LOG_LEVEL": "LOUD"}, "NBHELP_LOG_LEVEL=LOUD: must be 'DEBUG', 'INFO'"),
        (
            {"NBHELP_RUN_WALL_S": "2"},
            "NBHELP_RUN_WALL_S: unknown setting; did you mean NBHELP_RUN__WALL_S?",
        ),
        (
            {"NBHELP_TELEGRAM_TOKEN": "1:abc"},
            "NBHELP_TELEGRAM_TOKEN: unknown setting; did you mean NBHELP_TELEGRAM__TOKEN?",
        ),
        (
            {"NBHELP_RUN__POOL_SIZE": "100000"},
            "NBHELP_RUN__POOL_SIZE=100000: must be auto or a whole number from 0 to 256",
        ),
        ({"NBHELP_WEB__PORT": "70000"}, "NBHELP_WEB__PORT=70000: must be less than or equal"),
        ({"PORT": "http"}, "PORT=http: must be a port number"),
    ],
)
def test_bad_environment_names_the_variable(
    clean_env: Path, env: dict[str, str], expected: str
) -> None:
    found = problems(**env)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_secret_value_is_never_echoed_in_an_error(clean_env: Path) -> None:
    found = problems(NBHELP_TELEGRAM__TOKEN="[1, 2]", NBHELP_WEB__PORT="x")
    assert "[1, 2]" not in " ".join(found)


def test_rules_across_keys_name_every_key_involved(clean_env: Path) -> None:
    found = problems(NBHELP_RUN__MAX_SESSIONS="1", NBHELP_RUN__MAX_RUNNING="2")
    assert found == [
        "run (NBHELP_RUN__MAX_RUNNING, NBHELP_RUN__MAX_SESSIONS): "
        "max_sessions (1) must be at least max_running (2)"
    ]


def test_config_file_keys_are_used_and_typos_named(clean_env: Path) -> None:
    cfg = clean_env / "nbhelp.toml"
    cfg.write_text('db = "from-file.db"\n[run]\nwall_s = 2\n[[tip]]\nid = "x"\n')
    settings, origins = load_settings(config=cfg)
    assert settings.run.wall_s == 2 and settings.db == Path("from-file.db")
    assert str(origins[("run", "wall_s")]) == f"{cfg}: [run] wall_s"
    cfg.write_text("[monitor]\nintervall_s = 600\n[run]\nwall_s = 0\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config=cfg)
    assert sorted(err.value.problems) == [
        f"{cfg}: [monitor] intervall_s: unknown setting",
        f"{cfg}: [run] wall_s: must be greater than 0",
    ]
    cfg.write_text("[weird]\nx = 1\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config=cfg)
    assert err.value.problems == [f"{cfg}: weird: unknown setting"]
    cfg.write_text("[run\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config=cfg)


def test_precedence_env_over_dotenv_over_file_over_default(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = clean_env / "nbhelp.toml"
    cfg.write_text("[run]\nwall_s = 2\nmemory_mb = 2048\npool_size = 5\n")
    (clean_env / ".env").write_text("NBHELP_RUN__MEMORY_MB=1536\nNBHELP_RUN__POOL_SIZE=4\n")
    monkeypatch.setenv("NBHELP_RUN__POOL_SIZE", "3")
    settings, origins = load_settings(config=cfg)
    assert (settings.run.wall_s, settings.run.memory_mb, settings.run.pool_size) == (2, 1536, 3)
    assert str(origins[("run", "pool_size")]) == "NBHELP_RUN__POOL_SIZE"
    assert str(origins[("run", "memory_mb")]) == ".env: NBHELP_RUN__MEMORY_MB"
    assert str(origins[("run", "wall_s")]).endswith("[run] wall_s")
    assert str(origins[("run", "max_images")]) == "default"


def test_dotenv_typos_are_named_too(clean_env: Path) -> None:
    (clean_env / ".env").write_text("NBHELP_RUN_WALL_S=2\n")
    assert problems() == [
        ".env: NBHELP_RUN_WALL_S: unknown setting; did you mean NBHELP_RUN__WALL_S?"
    ]


def test_port_from_the_platform_unless_ours_is_set(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "5555")
    settings, origins = load_settings()
    assert settings.web.port == 5555 and str(origins[("web", "port")]) == "PORT"
    monkeypatch.setenv("NBHELP_WEB__PORT", "6666")
    assert load_settings()[0].web.port == 6666


def test_effective_settings_redact_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBHELP_TELEGRAM__TOKEN", "123456:very-secret")
    settings, origins = load_settings()
    rows = {key: (value, origin) for key, value, origin in effective(settings, origins)}
    assert rows["telegram.token"] == ("**********", "NBHELP_TELEGRAM__TOKEN")
    assert "very-secret" not in repr(rows)
    assert secret_values(settings) == ["123456:very-secret"]


def test_every_secret_anywhere_is_redacted() -> None:
    s = Settings(
        telegram={"token": SecretStr("tg-secret"), "webhook_secret": SecretStr("wh-secret")},
        discord={"token": SecretStr("dc-secret")},
        _env_file=None,  # type: ignore[call-arg]
    )
    assert sorted(secret_values(s)) == ["dc-secret", "tg-secret", "wh-secret"]


def run_bot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=process_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_settings_stop_the_bot_with_status_2_and_no_traceback(tmp_path: Path) -> None:
    done = run_bot(tmp_path, "ask", "/help", NBHELP_RUN__WALL_S="-1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "nbhelp: invalid settings:",
        "  NBHELP_RUN__WALL_S=-1: must be greater than 0",
    ]
    typo = tmp_path / "typo.toml"
    typo.write_text("[monitor]\nintervall_s = 600\n")
    done = run_bot(tmp_path, "ask", "/status colab", NBHELP_CONFIG=str(typo))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{typo}: [monitor] intervall_s: unknown setting" in done.stderr


def test_config_command_shows_values_and_origins(tmp_path: Path) -> None:
    done = run_bot(tmp_path, "config", NBHELP_RUN__WALL_S="7", NBHELP_DISCORD__TOKEN="dc-secret")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert lines["run.wall_s"].split()[1] == "7.0" and "[NBHELP_RUN__WALL_S]" in lines["run.wall_s"]
    assert "dc-secret" not in done.stdout and "**********" in lines["discord.token"]
    assert "[default]" in lines["run.max_images"]


def test_the_settings_reference_is_current() -> None:
    """docs/settings.md lists exactly the settings the model has (regenerate it with
    `python -m bot config --reference > docs/settings.md`)."""
    from bot.settings import reference

    assert (ROOT / "docs" / "settings.md").read_text() == reference()


def test_every_setting_says_what_it_does() -> None:
    from bot.settings import reference

    rows = [line for line in reference().splitlines() if line.startswith("| `NBHELP_")]
    assert len(rows) > 90
    assert [r for r in rows if r.rstrip().endswith("|  |")] == []
