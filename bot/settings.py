"""Settings from the environment (prefix ``NBHELP_``) and an optional ``.env`` file.

Tokens are ``SecretStr``: they print as ``**********`` and :func:`secret_values` feeds the log
redaction filter, so a token never reaches a log line or a reply.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NBHELP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    db: Path = Field(Path("nbhelp.db"), description="SQLite file of the store")
    config: Path | None = Field(None, description="TOML file adding or overriding platforms")
    out_dir: Path = Field(Path("nbhelp-out"), description="where the console saves attachments")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_file: Path | None = Field(None, description="also write the log to this file")

    telegram_token: SecretStr | None = None
    discord_token: SecretStr | None = None


def secret_values(settings: Settings) -> list[str]:
    """Every secret's plain value, for redaction."""
    out = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    return out
