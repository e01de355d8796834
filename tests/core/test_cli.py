"""The console adapter and ``python -m bot`` as a user runs them, in real processes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from bot.adapters.console import ConsoleAdapter
from bot.core.app import Core
from bot.core.models import Attachment, Image, Reply, para

ROOT = Path(__file__).resolve().parents[2]


def run_bot(
    *args: str, tmp: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("NBHELP_")}
    e |= {"NBHELP_DB": str(tmp / "bot.db"), "NBHELP_OUT_DIR": str(tmp / "out")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=e,
        cwd=tmp,
        input=stdin,
        timeout=60,
    )


def test_ask_prints_the_reply(tmp_path: Path) -> None:
    p = run_bot("ask", "/alternatives colab gpu", tmp=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Kaggle" in p.stdout
    assert (tmp_path / "bot.db").exists()


def test_ask_unknown_command_still_exits_zero(tmp_path: Path) -> None:
    p = run_bot("ask", "/frobnicate", tmp=tmp_path)
    assert p.returncode == 0 and "/help" in p.stdout


def test_no_terminal_exits_with_the_settings_to_set(tmp_path: Path) -> None:
    p = run_bot(tmp=tmp_path, stdin="")
    assert p.returncode == 2
    assert "NBHELP_TELEGRAM__TOKEN" in p.stderr and "NBHELP_DISCORD__TOKEN" in p.stderr


def test_bad_config_fails_at_start_naming_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[override.colab]\npriority = 'high'\n")
    p = run_bot("ask", "/help", tmp=tmp_path, env={"NBHELP_CONFIG": str(cfg)})
    assert p.returncode != 0
    assert str(cfg) in p.stderr and "override.colab: priority" in p.stderr


async def test_console_adapter_loop_and_attachments(core: Core, tmp_path: Path) -> None:
    out = io.StringIO()
    stdin = io.StringIO("/status azure\n\n/alternatives offline\n/quit\n/help\n")
    adapter = ConsoleAdapter(core, tmp_path / "att", stream=out, stdin=stdin)
    await adapter.run()
    text = out.getvalue()
    assert "2021-01-15" in text and "Jupyter on your own computer" in text
    assert "List the commands" not in text  # stopped at /quit
    shown = adapter.show(
        Reply(
            (para("x"),),
            images=(Image(b"\x89PNG..", "plot.png"),),
            files=(Attachment(b"data", "../../etc/out.txt"),),
        )
    )
    saved = [
        Path(line.split("saved: ")[1].split("]")[0].split(" — ")[0])
        for line in shown.splitlines()
        if "saved:" in line
    ]
    assert len(saved) == 2 and all(s.parent == tmp_path / "att" and s.exists() for s in saved)
    assert saved[0].read_bytes() == b"\x89PNG.."


async def test_console_adapter_is_connected_once_started(core: Core, tmp_path: Path) -> None:
    adapter = ConsoleAdapter(core, tmp_path / "att", stream=io.StringIO(), stdin=io.StringIO())
    assert adapter.connected is False
    await adapter.start()
    try:
        assert adapter.connected is True and adapter in core.adapters
    finally:
        await adapter.stop()
