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
    log_level: str | None = Field(
        None,
        description="DEBUG, INFO, WARNING or ERROR; default INFO for chat adapters, "
        "WARNING in the console and for `ask` (the log would mix with the chat)",
    )
    log_file: Path | None = Field(None, description="also write the log to this file")

    # /run: the kernel pool (see README, "Running code")
    run_enabled: bool = Field(True, description="offer /run at all")
    run_wall_s: float = Field(10.0, gt=0, description="wall time per run before interrupt")
    run_memory_mb: int = Field(1024, gt=0, description="address-space limit of a kernel")
    run_max_processes: int = Field(64, gt=0, description="processes and threads of a kernel")
    run_tmp_mb: int = Field(64, gt=0, description="size of a kernel's writable home")
    run_output_bytes: int = Field(1_000_000, gt=0, description="text captured per run")
    run_max_images: int = Field(4, ge=0, description="images per run")
    run_pool_size: int = Field(2, ge=0, description="warm spare kernels")
    run_max_sessions: int = Field(8, gt=0, description="live kernel sessions at once")
    run_per_minute: int = Field(15, gt=0, description="runs per user per minute")
    run_idle_timeout_s: float = Field(600.0, gt=0, description="session ends after this idle time")
    run_max_age_s: float = Field(3600.0, gt=0, description="session ends after this age")
    run_unsandboxed_i_trust_every_user: bool = Field(
        False,
        description="DANGER: run code WITHOUT bubblewrap when the sandbox is unavailable; "
        "only for a trusted single-user machine",
    )

    telegram_token: SecretStr | None = Field(None, description="Telegram bot token from @BotFather")
    telegram_base_url: str = Field(
        "https://api.telegram.org/bot", description="Bot API base; the token is appended"
    )
    telegram_base_file_url: str = Field(
        "https://api.telegram.org/file/bot", description="file download base"
    )
    telegram_webhook_url: str | None = Field(
        None, description="public https URL: webhook mode instead of long polling"
    )
    telegram_webhook_listen: str = Field("0.0.0.0", description="webhook listen address")
    telegram_webhook_port: int = Field(8443, description="webhook listen port")
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="secret token Telegram must send with every update"
    )

    discord_token: SecretStr | None = Field(None, description="Discord bot token")
    discord_guild_id: int | None = Field(
        None, description="sync slash commands to this server only (immediate; development)"
    )
    discord_api_base: str = Field("https://discord.com/api/v10", description="REST API base")
    discord_gateway_url: str = Field(
        "wss://gateway.discord.gg/", description="gateway WebSocket URL"
    )


def secret_values(settings: Settings) -> list[str]:
    """Every secret's plain value, for redaction."""
    out = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    return out
