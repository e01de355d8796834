"""Helpers for tests that run the bot as a real process."""

from __future__ import annotations

import os
from pathlib import Path

from bot.core.registry import Registry
from handlers import COMMANDS


def process_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment for ``python -m bot`` in a test: no NBHELP_* from outside, a database
    in tmp_path, and a config whose outage monitor never probes on its own (a subprocess is
    outside the suite's loopback-only guard, and no test may reach the internet)."""
    config = tmp_path / "process-test.toml"
    config.write_text("[monitor]\nbackground = false\ncontrol_urls = []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBHELP_")}
    env |= {"NBHELP_DB": str(tmp_path / "bot.db"), "NBHELP_CONFIG": str(config)}
    env |= {"NBHELP_RUN__POOL_SIZE": "0"}  # no warm kernels unless a test runs code
    env |= settings
    return env


def build_registry() -> Registry:
    """A fresh registry of every command (tests that add their own)."""
    return Registry.of(COMMANDS)


REGISTRY = build_registry()
