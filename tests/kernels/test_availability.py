"""When the sandbox cannot work, /run says so and names the fix; unsandboxed only on opt-in."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.kernels import KernelService, LocalBackend, RunStatus, SandboxUnavailable
from tests.kernels.helpers import DB_SECRET, TEST_LIMITS, Protected, Runner, make_protected

LIMITS = TEST_LIMITS
NO_USERNS = (
    "bwrap: No permissions to creating new namespace, likely because the kernel does not "
    "allow non-privileged user namespaces."
)


@pytest.fixture
def fake_bwrap() -> Iterator[str]:
    """A bwrap that fails like one on a host without unprivileged user namespaces.

    In a world-traversable directory: as root, bwrap runs as an unprivileged uid."""
    directory = tempfile.mkdtemp(prefix="nbhelp-fake-bwrap-")
    os.chmod(directory, 0o755)
    path = Path(directory) / "bwrap"
    path.write_text(f"#!/bin/sh\necho '{NO_USERNS}' >&2\nexit 1\n")
    path.chmod(0o755)
    yield str(path)
    shutil.rmtree(directory)


async def test_missing_bubblewrap_disables_run_and_names_the_fix() -> None:
    backend = LocalBackend(LIMITS, bwrap="/nonexistent/bwrap")
    service = KernelService(LIMITS, backend=backend)
    try:
        await service.start()
        assert not service.available
        assert "apt-get install bubblewrap" in (service.unavailable_reason or "")
        info = service.info()
        assert not info.available and "bubblewrap" in (info.unavailable_reason or "")
        with pytest.raises(SandboxUnavailable) as err:
            await service.run("chat", "user", "print(1)")
        assert "apt-get install bubblewrap" in err.value.user_message
    finally:
        await service.aclose()


async def test_bubblewrap_without_user_namespaces(
    fake_bwrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = KernelService(LIMITS, backend=LocalBackend(LIMITS, bwrap=fake_bwrap))
    try:
        with caplog.at_level(logging.ERROR, logger="bot.kernels"):
            await service.start()
        reason = service.unavailable_reason or ""
        assert not service.available
        assert "No permissions to creating new namespace" in reason
        assert "kernel.unprivileged_userns_clone=1" in reason
        assert any("/run is disabled" in r.getMessage() for r in caplog.records)
        with pytest.raises(SandboxUnavailable) as err:
            await service.run("chat", "user", "print(1)")
        assert "/run is disabled" in err.value.user_message
    finally:
        await service.aclose()


async def test_unsandboxed_only_when_explicitly_allowed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBHELP_TELEGRAM__TOKEN", "secret-unsandboxed")
    backend = LocalBackend(LIMITS, bwrap="/nonexistent/bwrap", preimport=False)
    service = KernelService(LIMITS, backend=backend, allow_unsandboxed=True)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.kernels"):
            await service.start()
        assert service.available
        info = service.info()
        assert not info.sandboxed and info.backend == "local-unsandboxed"
        assert any("WITHOUT A SANDBOX" in r.getMessage() for r in caplog.records)
        result = await Runner(service, "trusted")(
            "import os\nprint(sum(range(10)), dict(os.environ))"
        )
        assert result.status is RunStatus.OK and result.text.startswith("45 ")
        assert "secret-unsandboxed" not in result.text  # still a clean environment
    finally:
        await service.aclose()


@pytest.mark.slow
async def test_protected_files_inside_a_bound_directory_are_masked(tmp_path: Path) -> None:
    protected: Protected = make_protected(tmp_path)
    (protected.project / "data.csv").write_text("city,people\nAccra,2.5\n")
    os.chmod(tmp_path, 0o755)
    backend = LocalBackend(
        LIMITS,
        extra_ro_binds=[protected.project],
        preimport=False,
        protected_paths=[protected.db, protected.dotenv, protected.config],
    )
    service = KernelService(LIMITS, backend=backend)
    try:
        await service.start()
        assert service.available, service.unavailable_reason
        code = (
            f"print(open({str(protected.project / 'data.csv')!r}).read().splitlines()[1])\n"
            f"for p in {[str(p) for p in (protected.db, protected.dotenv, protected.config)]!r}:\n"
            "    print(repr(open(p, 'rb').read()))"
        )
        result = await Runner(service, "reader")(code)
        assert result.status is RunStatus.OK, result.text
        assert result.text == "Accra,2.5\nb''\nb''\nb''\n"
        assert DB_SECRET.encode() in protected.db.read_bytes()  # the real file is untouched
    finally:
        await service.aclose()


@pytest.mark.skipif(os.geteuid() != 0, reason="kernels only change uid when the bot is root")
async def test_run_dir_the_sandbox_uid_cannot_reach(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    service = KernelService(LIMITS, run_dir=private / "run")
    try:
        await service.start()
        assert not service.available
        assert f"chmod o+x {private}" in (service.unavailable_reason or "")
    finally:
        await service.aclose()
    assert not list((private / "run").iterdir())  # its own directory was removed again
