"""Contract tests: the gateway backend against a REAL Jupyter Kernel Gateway 3.0.1 on loopback,
whose kernelspec runs every kernel in the local pool's bubblewrap sandbox
(``bot.kernels.kernelspec``). State, plots, interrupts, isolation between users and the
secret-in-the-environment attack behave as they do locally (tests/kernels/test_attacks.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr

from bot.kernels import KernelService, RunStatus
from bot.kernels.gateway import GatewayBackend, GatewaySettings
from tests.kernels.helpers import ENV_SECRET, TEST_LIMITS, TOKEN_VAR, Protected, Runner
from tests.kernels.real_gateway import (
    KG_BIN,
    RealGateway,
    start_gateway,
    stop_gateway,
    wrapper_pids,
)

pytestmark = pytest.mark.slow
# One service for the module: a wall limit short enough that the interrupt test does not wait
# long, long enough that a loaded machine does not turn a normal run into a timeout.
LIMITS = TEST_LIMITS.model_copy(update={"wall_s": 8.0})


@pytest.fixture(scope="session")
def real_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    if not KG_BIN.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{KG_BIN} missing: ./dev test and .ci/run install it")
        pytest.skip(f"no Kernel Gateway at {KG_BIN} (./dev test installs it in .venv-kg)")
    root = tmp_path_factory.mktemp("kernel-gateway")
    secrets_dir = root / "bot"
    secrets_dir.mkdir()
    from tests.kernels.helpers import make_protected

    protected = make_protected(secrets_dir)
    options = [
        f"--output-bytes={TEST_LIMITS.output_bytes}",
        *(f"--protect={p}" for p in protected.paths),
    ]
    # The bot's token is in the gateway's environment too (as when both share one host).
    gateway = start_gateway(root, extra_env={TOKEN_VAR: ENV_SECRET}, options=options)
    gateway.protected = protected  # type: ignore[attr-defined]
    try:
        yield gateway
    finally:
        stop_gateway(gateway)
        assert not wrapper_pids(gateway), "kernel wrappers outlived the gateway"


def test_kernelspec_is_the_bubblewrap_one(real_gateway: RealGateway) -> None:
    spec = Path(real_gateway.root / "kernels" / "nbhelp-python" / "kernel.json").read_text()
    assert '"interrupt_mode": "message"' in spec and "bot.kernels.kernelspec" in spec


@pytest.fixture(scope="module")
def secret_in_bot_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_VAR, ENV_SECRET)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    real_gateway: RealGateway, secret_in_bot_env: None
) -> AsyncIterator[KernelService]:
    settings = GatewaySettings(
        name="kg",
        base_url=real_gateway.url,
        token=SecretStr(real_gateway.token),
        user_id_secret=SecretStr("contract-test-hmac"),
        kernelspec="nbhelp-python",
        sandboxed=True,
        warm_pool_size=1,
        max_kernels=10,
        start_timeout_s=60,
    )
    limits = settings.kernel_limits(LIMITS)  # as the wiring does: within max_kernels
    backend = GatewayBackend(settings, limits)
    svc = KernelService(limits, backend=backend)
    await svc.start()
    assert svc.available, svc.unavailable_reason
    yield svc
    await svc.aclose()


def runner(service: KernelService, name: str) -> Runner:
    return Runner(service, f"kg:{name}")


@pytest.mark.asyncio(loop_scope="module")
async def test_state_persists_across_runs(service: KernelService) -> None:
    run = runner(service, "state")
    await run.ok("total = 40")
    assert await run.ok("total += 2\nprint(total)") == "42\n"
    result = await run("total")
    assert result.text == "42\n"


@pytest.mark.asyncio(loop_scope="module")
async def test_plots_come_back_as_png(service: KernelService) -> None:
    result = await runner(service, "plot")("plt.plot([1, 3, 2])\nplt.title('growth');")
    assert result.status is RunStatus.OK
    assert len(result.images) == 1 and result.images[0].startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.asyncio(loop_scope="module")
async def test_errors_are_trimmed_tracebacks(service: KernelService) -> None:
    result = await runner(service, "error")("def f():\n    return 1 / 0\nf()")
    assert result.status is RunStatus.ERROR
    assert result.error is not None and result.error.ename == "ZeroDivisionError"
    assert "\x1b[" not in result.text


@pytest.mark.asyncio(loop_scope="module")
async def test_interrupt_stops_an_infinite_loop_and_keeps_variables(
    service: KernelService,
) -> None:
    run = runner(service, "loop")
    await run.ok("kept = 'yes'")
    result = await run("while True:\n    pass")
    assert result.status is RunStatus.TIMEOUT and not result.session_reset
    assert result.notices == (
        f"Stopped after {LIMITS.wall_s:g} s (time limit). Your variables are kept.",
    )
    assert await run.ok("print(kept)") == "yes\n"


@pytest.mark.asyncio(loop_scope="module")
async def test_users_are_isolated_from_each_other(service: KernelService) -> None:
    alice, bob = runner(service, "alice"), runner(service, "bob")
    await alice.ok(
        "secret_var = 'alice-only'\nopen('/home/user/alice.txt', 'w').write('alice-file')\n"
        "import os; print(os.getpid())"
    )
    code = (
        "import os, glob\n"
        "print('secret_var' in globals(), os.path.exists('/home/user/alice.txt'))\n"
        "print(sorted(int(p.split('/')[2]) for p in glob.glob('/proc/[0-9]*/cmdline')))"
    )
    out = await bob.ok(code)
    first, pids = out.splitlines()
    assert first == "False False"
    assert len(eval(pids)) <= 3  # only bob's own sandbox: its PID 1, the kernel, maybe a child
    assert await alice.ok("print(open('/home/user/alice.txt').read())") == "alice-file\n"


@pytest.mark.asyncio(loop_scope="module")
async def test_secret_in_the_bots_and_gateways_environment_is_not_visible(
    service: KernelService, real_gateway: RealGateway
) -> None:
    assert os.environ[TOKEN_VAR] == ENV_SECRET  # the bot has it; so does the gateway
    protected: Protected = real_gateway.protected  # type: ignore[attr-defined]
    paths = [str(p) for p in protected.paths] + [str(real_gateway.root / "runtime")]
    code = (
        "import os, glob\n"
        "print(open('/proc/1/environ', 'rb').read())\n"
        "print(dict(os.environ))\n"
        "for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
        "    print(p, open(p, 'rb').read())\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        print(p, open(p, 'rb').read() if os.path.isfile(p) else os.listdir(p))\n"
        "    except OSError as e:\n"
        "        print('absent', type(e).__name__)\n"
    )
    result = await runner(service, "secrets")(code)  # Runner: no secret in anything shown
    assert result.status is RunStatus.OK
    assert result.text.count("absent") == len(paths)
    assert "NBHELP" not in result.text and real_gateway.token not in result.text
    assert "KERNEL_USERNAME" not in result.text  # nothing of the request reaches the kernel


@pytest.mark.asyncio(loop_scope="module")
async def test_the_kernel_cannot_reach_the_gateway(
    service: KernelService, real_gateway: RealGateway
) -> None:
    port = real_gateway.url.rsplit(":", 1)[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError as e:\n"
        "    print('failed', type(e).__name__)"
    )
    assert (await runner(service, "net")(code)).text.startswith("failed")


@pytest.mark.asyncio(loop_scope="module")
async def test_reset_deletes_the_kernel_and_its_sandbox(
    service: KernelService, real_gateway: RealGateway
) -> None:
    run = runner(service, "reset")
    await run.ok("x = 1")
    before = set(wrapper_pids(real_gateway))
    assert await service.reset(run.session)
    result = await run("print('x' in globals())")
    assert result.text == "False\n"
    after = set(wrapper_pids(real_gateway))
    assert len(before - after) >= 1  # the reset kernel's wrapper (and sandbox) is gone


@pytest.mark.asyncio(loop_scope="module")
async def test_gpu_command_end_to_end_through_the_core(
    real_gateway: RealGateway, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`/run --gpu` in a chat, routed by the settings to a "GPU" gateway: the real Kernel
    Gateway with the bubblewrap kernelspec (a plain one standing in for a GPU kernelspec)."""
    from bot.settings import Settings
    from bot.wiring import build_core
    from tests.conftest import Chat

    settings = Settings(
        db=tmp_path_factory.mktemp("gpu-core") / "bot.db",
        monitor={"background": False, "control_urls": ()},
        run={"pool_size": 0},
        gateways={
            "gpu": {
                "base_url": real_gateway.url,
                "token": real_gateway.token,
                "kernelspec": "nbhelp-python",
                "gpu": True,
                "gpu_description": "stand-in GPU kernelspec",
                "warm_pool_size": 0,
                "start_timeout_s": 60,
            }
        },
        _env_file=None,  # type: ignore[call-arg]
    )
    core = build_core(settings)
    try:
        chat = Chat(core, user_id="gpu-user")
        assert "42" in await chat.say("/run --gpu x = 6 * 7\nprint(x)")
        assert "42" in await chat.say("/run --gpu print(x)")  # a session, like a notebook
        info = await chat.say("/run --info")
        assert "stand-in GPU kernelspec (gateway:gpu)" in info and "reachable" in info
    finally:
        await core.aclose()
