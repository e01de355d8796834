from __future__ import annotations

import logging
from pathlib import Path

from pydantic import SecretStr

from bot import logs
from bot.settings import Settings, secret_values


def test_tokens_are_secret_and_redacted_from_logs(tmp_path: Path) -> None:
    token = "123456:AAH-very-secret-token"
    s = Settings(telegram={"token": SecretStr(token)}, db=tmp_path / "x.db", _env_file=None)  # type: ignore[call-arg]
    assert token not in repr(s) and token not in str(s.model_dump())
    log_file = tmp_path / "bot.log"
    logs.setup("INFO", secret_values(s), log_file)
    try:
        log = logging.getLogger("nbhelp.test")
        log.info("calling https://api.telegram.org/bot%s/getMe", token)
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            log.exception("failed")
    finally:
        for h in logging.getLogger().handlers:
            h.flush()
        logs.setup("WARNING")
    text = log_file.read_text()
    assert token not in text
    assert text.count(logs.REDACTED) >= 2 and "ValueError" in text
