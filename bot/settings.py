"""Every operational setting, in one pydantic-settings model checked at start.

Sources, highest precedence first:

1. keyword arguments (tests, embedding);
2. environment variables ``NBHELP_<KEY>`` and, for sections, ``NBHELP_<SECTION>__<KEY>``
   (e.g. ``NBHELP_RUN__WALL_S=5``, ``NBHELP_TELEGRAM__TOKEN=…``);
3. a ``.env`` file in the working directory (same names);
4. the TOML config file named by ``NBHELP_CONFIG`` (``[run] wall_s = 5``; top-level keys such
   as ``db = "…"`` too). Its knowledge sections (``[[platform]]``, ``[override.*]``,
   ``[[message]]``, ``[[tip]]``) belong to the knowledge loader and are skipped here;
5. the defaults below.

Every key is typed and bounded. An unknown, mistyped or out-of-range key from any source stops
the bot at start with a :class:`SettingsError` naming the variable or the file and key, and the
reason (``python -m bot`` exits with status 2, no traceback). ``python -m bot config`` prints the
effective settings and where each came from, secrets redacted. Tokens are ``SecretStr``: they
print as ``**********`` and :func:`secret_values` feeds the log redaction filter.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.delivery.settings import DeliverySettings
from bot.kernels.gateway.settings import GatewaySettings
from bot.kernels.kaggle.settings import KaggleSettings
from bot.kernels.settings import RunSettings
from bot.monitor.settings import MonitorSettings
from bot.text import did_you_mean
from bot.web.settings import WebSettings

PREFIX = "NBHELP_"
DELIMITER = "__"
ENV_FILE = ".env"
# Sections of the config file that the knowledge loader reads (knowledge/loader.py).
KNOWLEDGE_SECTIONS = frozenset({"platform", "override", "message", "tip"})

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TelegramSettings(Section):
    token: SecretStr | None = Field(None, description="bot token from @BotFather; on when set")
    base_url: str = Field(
        "https://api.telegram.org/bot", description="Bot API base; the token is appended"
    )
    base_file_url: str = Field(
        "https://api.telegram.org/file/bot", description="file download base"
    )
    webhook_url: str | None = Field(
        None,
        description="public https URL: webhook mode instead of long polling; the web server "
        "([web] host and port) serves its path",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="secret token Telegram must send with every update"
    )


class DiscordSettings(Section):
    token: SecretStr | None = Field(None, description="bot token; on when set")
    guild_id: int | None = Field(
        None, ge=0, description="sync slash commands to this server only (immediate; development)"
    )
    api_base: str = Field("https://discord.com/api/v10", description="REST API base")
    gateway_url: str = Field("wss://gateway.discord.gg/", description="gateway WebSocket URL")


class StartupSettings(Section):
    adapter_retry_initial_s: float = Field(
        1.0, gt=0, le=60, description="first wait before retrying a chat platform that failed"
    )
    adapter_retry_max_s: float = Field(
        60.0, gt=0, le=3600, description="longest wait between start attempts of a chat platform"
    )
    stop_timeout_s: float = Field(
        10.0, gt=0, le=120, description="time each adapter gets to finish in-flight work"
    )
    ask_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="`ask` gives up (exit 3) after this long"
    )
    db_busy_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="how long a command waits for a database locked by another process",
    )
    db_watch_s: float = Field(
        5.0, gt=0, le=600, description="how often the database file is checked to still be ours"
    )


class Settings(BaseSettings):
    """The root: top-level keys plus one section per service."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter=DELIMITER,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    db: Path = Field(Path("nbhelp.db"), description="SQLite file of the store")
    config: Path | None = Field(
        None, description="TOML file with settings sections and knowledge overrides"
    )
    out_dir: Path = Field(Path("nbhelp-out"), description="where the console saves attachments")
    log_level: LogLevel | None = Field(
        None,
        description="default INFO for chat adapters, WARNING in the console and for `ask`",
    )
    log_file: Path | None = Field(None, description="also write the log to this file")

    run: RunSettings = Field(default_factory=RunSettings, description="/run: the kernel pool")
    monitor: MonitorSettings = Field(
        default_factory=MonitorSettings, description="the outage monitor"
    )
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings,
        description="the inbound record, the reply outbox and the chat scheduler",
    )
    startup: StartupSettings = Field(
        default_factory=StartupSettings, description="start-up, shutdown and the database"
    )
    web: WebSettings = Field(
        default_factory=WebSettings,
        description="status page, JSON API, health and metrics (port: NBHELP_WEB__PORT or $PORT)",
    )
    gateways: dict[str, GatewaySettings] = Field(
        default_factory=dict,
        description="Jupyter Kernel/Enterprise Gateways by name ([gateways.gpu] base_url = …); "
        "docs/gpu.md",
    )
    kaggle: KaggleSettings = Field(
        default_factory=KaggleSettings,
        description="Kaggle's free GPUs as a batch backend for /run --gpu (docs/kaggle.md)",
    )

    @model_validator(mode="after")
    def _backends_exist(self) -> Settings:
        names = {f"gateway:{n}" for n in self.gateways} | {"local", "kaggle"}
        wanted = [self.run.backend, *(self.run.gpu_route or ())]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise ValueError(
                f"run: backend {unknown[0]!r} is not configured (known: {', '.join(sorted(names))})"
            )
        if self.telegram.webhook_url and self.web.enabled is False:
            raise ValueError(
                "telegram.webhook_url needs the web server, which serves the webhook: "
                "remove NBHELP_WEB__ENABLED=false (or use long polling)"
            )
        if self.run.backend == "kaggle":
            raise ValueError("run: backend kaggle is batch-only: use it in gpu_route")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init = getattr(init_settings, "init_kwargs", {}) or {}
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            ConfigFileSource(settings_cls, _config_path(init)),
        )

    @property
    def chat_platforms(self) -> list[str]:
        """The chat adapters whose tokens are set."""
        out = []
        if self.telegram.token is not None and self.telegram.token.get_secret_value():
            out.append("telegram")
        if self.discord.token is not None and self.discord.token.get_secret_value():
            out.append("discord")
        return out


class SettingsError(Exception):
    """Invalid settings: each line names the variable or file key and the reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# -- the config file -----------------------------------------------------------------------


def _config_path(init: Mapping[str, Any]) -> Path | None:
    if init.get("config") is not None:
        return Path(init["config"])
    raw = os.environ.get(f"{PREFIX}CONFIG") or _dotenv().get(f"{PREFIX}CONFIG")
    return Path(raw) if raw else None


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings part of the config file (knowledge sections left out)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError([f"{PREFIX}CONFIG={path}: file not found"]) from None
    except IsADirectoryError:
        raise SettingsError([f"{PREFIX}CONFIG={path}: is a directory, not a TOML file"]) from None
    except PermissionError:
        raise SettingsError(
            [f"{PREFIX}CONFIG={path}: cannot be read (permission denied)"]
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError([f"{path}: not valid TOML: {exc}"]) from None
    return {k: v for k, v in data.items() if k not in KNOWLEDGE_SECTIONS}


class ConfigFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file

    def __call__(self) -> dict[str, Any]:
        return read_config_file(self.path) if self.path is not None else {}


def _dotenv(path: str = ENV_FILE) -> dict[str, str]:
    if not Path(path).is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


# -- loading with clear errors -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one effective value came from."""

    kind: Literal["argument", "env", ".env", "file", "default"]
    name: str  # the variable, or "path: [section] key"

    def __str__(self) -> str:
        if self.kind == "env":
            return self.name
        if self.kind == ".env":
            return f".env: {self.name}"
        return self.name if self.kind == "file" else self.kind


def _env_name(path: tuple[str, ...]) -> str:
    return PREFIX + DELIMITER.join(p.upper() for p in path)


def _file_key(path: tuple[str, ...]) -> str:
    if len(path) == 1:
        return path[0]
    return f"[{'.'.join(path[:-1])}] {path[-1]}"


def _paths_under(path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The key itself when it is a leaf, else every leaf under that section."""
    under = [p for p in _walk_fields(Settings) if p[: len(path)] == path]
    return under or [path]


def _walk_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every settable key path, sections expanded."""
    for name, info in model.model_fields.items():
        sub = _section_model(info)
        if sub is not None:
            yield from _walk_fields(sub, (*prefix, name))
        else:
            yield (*prefix, name)


def _section_model(info: FieldInfo) -> type[BaseModel] | None:
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _known_env_names() -> dict[str, tuple[str, ...]]:
    return {_env_name(p): p for p in _walk_fields(Settings)}


def _check_env_names(environ: Mapping[str, str], where: str) -> list[str]:
    """Variables with our prefix that name no setting (pydantic-settings ignores them)."""
    known = _known_env_names()
    problems = []
    for var in sorted(environ):
        if not var.upper().startswith(PREFIX) or var.upper() in known:
            continue
        if _dict_key(var.upper(), known):
            continue
        close = did_you_mean(var.upper(), known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else "; `python -m bot config` lists them"
        problems.append(f"{where} {var}: unknown setting{hint}".lstrip())
    return problems


def _dict_key(var: str, known: Mapping[str, tuple[str, ...]]) -> bool:
    """``NBHELP_MONITOR__INTERVAL_OVERRIDES__COLAB``: a key inside a dict-valued setting."""
    for name, path in known.items():
        if var.startswith(name + DELIMITER) and _is_mapping_field(path):
            return True
    return False


def _is_mapping_field(path: tuple[str, ...]) -> bool:
    model: type[BaseModel] = Settings
    for part in path[:-1]:
        sub = _section_model(model.model_fields[part])
        if sub is None:
            return False
        model = sub
    ann = model.model_fields[path[-1]].annotation
    return getattr(ann, "__origin__", None) is dict


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    cur: Any = data
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return False
        cur = cur[part]
    return True


def _env_has(environ: Mapping[str, str], path: tuple[str, ...]) -> str | None:
    name = _env_name(path)
    for var in environ:
        if var.upper() == name:
            return var
    if len(path) > 1:  # a whole section given as JSON: NBHELP_RUN='{"wall_s": 5}'
        return _env_has(environ, path[:-1])
    return None


def origin_of(
    path: tuple[str, ...],
    *,
    init: Mapping[str, Any],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
    file: Mapping[str, Any],
    file_path: Path | None,
) -> Origin:
    if _lookup(init, path):
        return Origin("argument", ".".join(path))
    if (var := _env_has(environ, path)) is not None:
        return Origin("env", var)
    if (var := _env_has(dotenv, path)) is not None:
        return Origin(".env", var)
    if file_path is not None and _lookup(file, path):
        return Origin("file", f"{file_path}: {_file_key(path)}")
    return Origin("default", "")


def _reason(err: Mapping[str, Any]) -> str:
    reason = str(err.get("msg", "invalid"))
    for prefix, repl in (("Value error, ", ""), ("Input should be", "must be")):
        if reason.startswith(prefix):
            reason = repl + reason[len(prefix) :]
    return reason.strip()


def _describe_error(err: Mapping[str, Any], where: Origin, path: tuple[str, ...]) -> str:
    reason = _reason(err)
    if err.get("type") == "extra_forbidden":
        reason = "unknown setting"
        if where.kind == "file":
            return f"{where.name}: unknown setting"
    value = err.get("input")
    if where.kind in ("env", ".env"):
        shown = "" if _is_secret_path(path) else f"={_short(value)}"
        return f"{where}{shown}: {reason}"
    if where.kind == "file":
        return f"{where.name}: {reason}"
    return f"{'.'.join(path) or 'settings'}: {reason}"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _is_secret_path(path: tuple[str, ...]) -> bool:
    return any(word in path[-1] for word in ("token", "secret", "password", "key"))


def load_settings(**overrides: Any) -> tuple[Settings, dict[tuple[str, ...], Origin]]:
    """Settings from every source, and where each value came from.

    Raises :class:`SettingsError` naming every bad variable or key.
    """
    env = dict(os.environ)
    dotenv = _dotenv()
    problems = _check_env_names(env, "") + _check_env_names(dotenv, ".env:")
    file_path = (
        Path(overrides["config"])
        if overrides.get("config") is not None
        else Path(raw)
        if (raw := env.get(f"{PREFIX}CONFIG") or dotenv.get(f"{PREFIX}CONFIG"))
        else None
    )
    file = read_config_file(file_path) if file_path is not None else {}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            path = tuple(str(p) for p in err["loc"] if not isinstance(p, int))
            if err.get("type") == "extra_forbidden" and path[:1] and path[0].startswith("nbhelp_"):
                continue  # a .env name already reported above, with its did-you-mean
            if not path:  # a rule across sections: its message names the keys
                problems.append(_reason(err))
                continue
            found = {
                sub: origin_of(
                    sub, init=overrides, environ=env, dotenv=dotenv, file=file, file_path=file_path
                )
                for sub in _paths_under(path)
            }
            set_here = [o for o in found.values() if o.kind != "default"]
            if path in found or len(set_here) != 1:
                where = found.get(path, Origin("default", ""))
            else:
                where = set_here[0]
            if path not in found and len(set_here) > 1:  # a check across keys of a section
                names = ", ".join(str(o) for o in set_here)
                problems.append(f"{'.'.join(path)} ({names}): {_reason(err)}")
            else:
                problems.append(_describe_error(err, where, path))
        raise SettingsError(list(dict.fromkeys(problems))) from None
    if problems:
        raise SettingsError(problems)
    origins = {
        path: origin_of(
            path, init=overrides, environ=env, dotenv=dotenv, file=file, file_path=file_path
        )
        for path in _walk_fields(Settings)
    }
    if "PORT" in env and origins[("web", "port")].kind == "default":
        settings, origins[("web", "port")] = _platform_port(settings, env["PORT"])
    return settings, origins


def _platform_port(settings: Settings, raw: str) -> tuple[Settings, Origin]:
    """Heroku-like hosts say where to listen in ``$PORT`` (NBHELP_WEB__PORT wins)."""
    try:
        web = WebSettings.model_validate({**settings.web.model_dump(), "port": raw})
    except ValidationError:
        raise SettingsError([f"PORT={_short(raw)}: must be a port number (0-65535)"]) from None
    return settings.model_copy(update={"web": web}), Origin("env", "PORT")


def effective(
    settings: Settings, origins: Mapping[tuple[str, ...], Origin]
) -> list[tuple[str, str, str]]:
    """``(key, value, origin)`` rows for ``python -m bot config``; secrets redacted."""
    rows = []
    for path in _walk_fields(Settings):
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        if isinstance(value, SecretStr):
            shown = "**********" if value.get_secret_value() else "(empty)"
        elif value is None:
            shown = "(not set)"
        else:
            shown = str(value)
        rows.append((".".join(path), shown, str(origins.get(path, Origin("default", "")))))
    return rows


def secret_values(settings: BaseModel) -> list[str]:
    """Every secret's plain value anywhere in the settings, for redaction."""
    out: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            out += secret_values(value)
        elif isinstance(value, tuple | list):
            out += [s for v in value if isinstance(v, BaseModel) for s in secret_values(v)]
        elif isinstance(value, dict):
            out += [s for v in value.values() if isinstance(v, BaseModel) for s in secret_values(v)]
    return out


def reference() -> str:
    """Every setting as a Markdown table (``docs/settings.md``): the variable, the file key,
    the default and what it does. Generated from the model, so nothing documented is unused."""
    lines = [
        "# Settings",
        "",
        "Generated from `bot/settings.py` (`python -m bot config --reference`); a test keeps it",
        "current. Sources, highest first: environment variables, a `.env` file, the TOML file",
        "named by `NBHELP_CONFIG`, these defaults. `python -m bot config` shows the effective",
        "values and where each came from.",
        "",
        "| variable | config file | default | meaning |",
        "|---|---|---|---|",
    ]
    defaults = Settings.model_construct()
    for path in _walk_fields(Settings):
        model: type[BaseModel] = Settings
        value: Any = defaults
        for part in path[:-1]:
            sub = _section_model(model.model_fields[part])
            assert sub is not None
            model, value = sub, getattr(value, part)
        info = model.model_fields[path[-1]]
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Path) or default is None or isinstance(default, str | int | float):
            shown = "—" if default is None else f"`{default}`"
        elif isinstance(default, tuple | list | dict):
            shown = f"`{default!r}`" if len(repr(default)) < 60 else "(see the model)"
        else:
            shown = f"`{default}`"
        if path == ("run", "max_running"):
            shown = "one per core, at most 4"
        about = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{_env_name(path)}` | `{_file_key(path)}` | {shown} | {about} |")
    return "\n".join(lines) + "\n"
