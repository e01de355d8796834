"""Helpers shared by the kernel tests (constants, secrets, runners, waiting without sleeps)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.kernels import KernelLimits, KernelService, RunResult, RunStatus

TOKEN_VAR = "NBHELP_TELEGRAM__TOKEN"
ENV_SECRET = "secret-xyz-env-7f3a"
DB_SECRET = "secret-xyz-db-91c2"
DOTENV_SECRET = "secret-xyz-dotenv-55d0"
CONFIG_SECRET = "secret-xyz-config-0b7e"
SECRETS = (ENV_SECRET, DB_SECRET, DOTENV_SECRET, CONFIG_SECRET)

# Generous time limits: a loaded 2-core machine must never turn a normal run into a timeout, or
# a slow answer to an interrupt into a kill. Everything else like production.
TEST_LIMITS = KernelLimits(
    wall_s=30.0,
    interrupt_grace_s=10.0,
    pool_size=2,
    max_running=2,
    max_sessions=8,
    runs_per_minute=10_000,
    output_bytes=200_000,
)
# For the tests of the time limit itself: only code that never ends meets this wall, and the
# grace after the interrupt stays generous (whether the kernel stops is what they check).
TIMEOUT_LIMITS = TEST_LIMITS.model_copy(update={"wall_s": 1.5, "pool_size": 1})
OUTPUT_NOTICE = "Output passed the 200 kB limit, so it was cut and your session was reset."


@dataclass(frozen=True)
class Protected:
    """Files the sandbox must never expose, each holding a known secret."""

    project: Path
    db: Path
    dotenv: Path
    config: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.db, self.dotenv, self.config, self.project)


def make_protected(root: Path) -> Protected:
    project = root / "project"
    project.mkdir()
    db = project / "nbhelp.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table tokens (value text)")
        conn.execute("insert into tokens values (?)", (DB_SECRET,))
    dotenv = project / ".env"
    dotenv.write_text(f"{TOKEN_VAR}={DOTENV_SECRET}\n")
    config = project / "nbhelp.toml"
    config.write_text(f'telegram_token = "{CONFIG_SECRET}"\n')
    return Protected(project=project, db=db, dotenv=dotenv, config=config)


class Runner:
    """Runs code as one (session, user) and checks the basics every result must satisfy."""

    def __init__(self, service: KernelService, name: str) -> None:
        self.service = service
        self.session = f"chat:{name}"
        self.user = f"user:{name}"

    async def __call__(self, code: str, **kwargs: object) -> RunResult:
        result = await self.service.run(self.session, self.user, code, **kwargs)  # type: ignore[arg-type]
        assert_clean(result)
        return result

    async def ok(self, code: str) -> str:
        result = await self(code)
        assert result.status is RunStatus.OK, (result.status, result.text, result.notices)
        return result.text


def assert_clean(result: RunResult) -> None:
    """No secret, valid UTF-8 and no NUL in anything a user could see."""
    visible = result.text + "\n".join(result.notices)
    for secret in SECRETS:
        assert secret not in visible
    assert "\x00" not in visible
    visible.encode("utf-8")  # raises on lone surrogates


async def until(condition: Callable[[], bool], *, steps: int = 10_000) -> None:
    """Yield to the event loop until ``condition`` holds (no timed sleeps)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
