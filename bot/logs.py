"""Logging set-up with secret redaction."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

REDACTED = "[redacted]"


_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    """Redact ``value`` from every log line from now on (a secret learned after start-up,
    e.g. a token read from a file)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


class RedactSecrets(logging.Filter):
    """Replace every known secret value in a record's final message (and exception text)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        for s in secrets:
            add_secret(s)

    @property
    def secrets(self) -> list[str]:
        return sorted(_SECRETS, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        for s in self.secrets:
            msg = msg.replace(s, REDACTED)
        record.msg, record.args = msg, None
        return True


def setup(level: str = "INFO", secrets: Iterable[str] = (), file: Path | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    redact = RedactSecrets(secrets)
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(redact)
        root.addHandler(h)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for noisy in ("httpx", "httpcore", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
