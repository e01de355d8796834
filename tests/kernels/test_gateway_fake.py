"""The gateway backend under the real KernelService, against a fake gateway on 127.0.0.1 that
scripts every way a gateway fails (tests/fakes/gateway_api.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import SecretStr

from bot.kernels import KernelLimits, KernelService, RunStatus, SandboxUnavailable
from bot.kernels.gateway import GatewayBackend, GatewaySettings, kernel_username
from bot.kernels.gateway.errors import GatewayFull, GatewayUnreachable
from bot.kernels.service import GONE_NOTICE
from tests.fakes.gateway_api import FakeGateway
from tests.kernels.helpers import until

TOKEN = "gw-token-secret-4d1e"
USER_SECRET = "per-deployment-hmac-key-77"

LIMITS = KernelLimits(
    wall_s=2.0,
    interrupt_grace_s=1.0,
    pool_size=0,
    max_running=2,
    max_sessions=4,
    runs_per_minute=10_000,
    output_bytes=50_000,
    max_image_bytes=100_000,
)


def settings(fake: FakeGateway, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "name": "gpu",
        "base_url": fake.url,
        "token": TOKEN,
        "user_id_secret": USER_SECRET,
        "warm_pool_size": 0,
        "full_retry_s": 0,
        "start_timeout_s": 10,
        "liveness_check_after_s": 0,
        "reconnect_timeout_s": 2,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def gateway_service(
    fake: FakeGateway, limits: KernelLimits = LIMITS, **overrides: Any
) -> AsyncIterator[KernelService]:
    backend = GatewayBackend(settings(fake, **overrides), limits)
    service = KernelService(limits, backend=backend)
    try:
        await service.start()
        yield service
    finally:
        await service.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(token=TOKEN) as gw:
        yield gw


async def test_runs_keep_state_and_send_only_the_users_hashed_id(fake: FakeGateway) -> None:
    async with gateway_service(fake) as svc:
        first = await svc.run("tg:chat:1", "tg:1", "x = 41\nprint('hi')")
        second = await svc.run("tg:chat:1", "tg:1", "x + 1")
        assert first.status is RunStatus.OK and first.text == "hi\n"
        assert second.status is RunStatus.OK and second.text == "42\n"
        assert len(fake.posts) == 1
        post = fake.posts[0]
        assert post["name"] == "nbhelp-python"
        assert post["env"] == {"KERNEL_USERNAME": kernel_username(USER_SECRET.encode(), "tg:1")}
        assert "tg:1" not in post["env"]["KERNEL_USERNAME"]
        assert set(fake.auth_headers) == {f"token {TOKEN}"}
    assert len(fake.deleted) == 1 and not fake.kernels  # aclose deletes every kernel


def test_kernel_username_is_stable_keyed_and_not_the_user() -> None:
    a = kernel_username(b"k1", "telegram:123")
    assert a == kernel_username(b"k1", "telegram:123")
    assert a != kernel_username(b"k2", "telegram:123") != kernel_username(b"k1", "telegram:124")
    assert a.startswith("nbhelp-") and len(a) == 23
    assert set(a[len("nbhelp-") :]) <= set("0123456789abcdef")


async def test_wrong_token_disables_the_backend_and_never_logs_it(
    fake: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.token = "another-token"
    async with gateway_service(fake) as svc:
        assert not svc.available
        with pytest.raises(SandboxUnavailable) as err:
            await svc.run("c", "u", "print(1)")
        assert "cannot sign in" in err.value.user_message
        assert "gpu" in err.value.user_message
    assert "401" in caplog.text
    assert TOKEN not in caplog.text and USER_SECRET not in caplog.text


async def test_missing_kernelspec_is_an_operator_error(fake: FakeGateway) -> None:
    async with gateway_service(fake, kernelspec="python-gpu") as svc:
        assert not svc.available
        assert "python-gpu" in (svc.unavailable_reason or "")


async def test_resource_limit_refuses_clearly_after_retrying(fake: FakeGateway) -> None:
    fake.max_kernels = 1
    async with gateway_service(fake) as svc:
        assert (await svc.run("c:a", "a", "1")).ok
        with pytest.raises(GatewayFull) as err:
            await svc.run("c:b", "b", "1")
        assert (
            err.value.user_message
            == "The kernel server gpu is full right now. Try again in a few minutes."
        )


async def test_resource_limit_waits_while_a_kernel_frees_up(fake: FakeGateway) -> None:
    fake.max_kernels = 1
    async with gateway_service(fake, full_retry_s=30) as svc:
        assert (await svc.run("c:a", "a", "1")).ok
        waiting = asyncio.create_task(svc.run("c:b", "b", "print('b ran')"))
        await fake.wait_for(lambda: fake.post_attempts >= 3)  # b is refused and retrying
        assert not waiting.done()
        assert await svc.reset("c:a")  # a's kernel is deleted: room on the gateway
        result = await waiting
        assert result.status is RunStatus.OK and result.text == "b ran\n"


async def test_per_user_cap_of_enterprise_gateway_is_a_full_server(fake: FakeGateway) -> None:
    fake.per_user_limit = 1
    # The bot's own per-person limit would close a's first session instead: allow two here.
    two_each = LIMITS.model_copy(update={"max_sessions_per_person": 2})
    async with gateway_service(fake, two_each) as svc:
        assert (await svc.run("chat1:a", "a", "1")).ok
        with pytest.raises(GatewayFull):
            await svc.run("chat2:a", "a", "1")  # same user, another chat: a second kernel
        assert (await svc.run("chat1:b", "b", "1")).ok  # another user is not affected


async def test_bots_own_cap_queues_users_with_their_position(fake: FakeGateway) -> None:
    limits = LIMITS.model_copy(update=dict(max_sessions=1, max_running=1))
    async with gateway_service(fake, limits) as svc:
        positions: list[int] = []

        async def on_queued(position: int) -> None:
            positions.append(position)

        slow = asyncio.create_task(svc.run("c:a", "a", "import time; time.sleep(0.3)"))
        await until(lambda: svc.info().running == 1)
        result = await svc.run("c:b", "b", "print('b')", on_queued=on_queued)
        assert result.text == "b\n" and positions == [1]
        assert (await slow).ok
        assert max(len(fake.kernels), 0) <= 1


async def test_slow_post_is_refused_and_its_late_kernel_deleted(fake: FakeGateway) -> None:
    fake.post_delay_s = 0.5
    async with gateway_service(fake, start_timeout_s=0.1) as svc:
        with pytest.raises(GatewayUnreachable) as err:
            await svc.run("c", "u", "1")
        assert "does not answer" in err.value.user_message
    # aclose waited for the abandoned POST and deleted what it created
    assert len(fake.posts) == 1 and len(fake.deleted) == 1
    assert not fake.kernels


async def test_websocket_drop_mid_run_reconnects_and_keeps_everything(fake: FakeGateway) -> None:
    async with gateway_service(fake) as svc:
        await svc.run("c", "u", "kept = 'yes'")
        result = await svc.run("c", "u", "print('before')\n#fake:drop\nprint('after')")
        assert result.status is RunStatus.OK, result.notices
        assert result.text == "before\nafter\n"
        assert not result.session_reset
        assert (await svc.run("c", "u", "print(kept)")).text == "yes\n"
        sessions = {session for _, session in fake.ws_opens}
        assert len(fake.ws_opens) == 2 and len(sessions) == 1  # reopened with the same session


async def test_websocket_drop_without_reconnect_reports_an_interrupted_run(
    fake: FakeGateway,
) -> None:
    fake.refuse_reconnect = True
    async with gateway_service(fake) as svc:
        result = await svc.run("c", "u", "#fake:drop\nprint('lost')")
        assert result.status is RunStatus.CRASHED and result.session_reset
        assert result.notices[-1].startswith("Interrupted: the connection to the kernel server")
        again = await svc.run("c", "u", "print('fresh')")
        assert again.ok and again.text == "fresh\n"
        assert len(fake.posts) == 2


@pytest.mark.parametrize(
    ("directive", "how"),
    [("die", "it died on the kernel server"), ("restart", "the kernel server restarted it")],
)
async def test_dead_or_restarting_kernel_resets_the_session(
    fake: FakeGateway, directive: str, how: str
) -> None:
    async with gateway_service(fake) as svc:
        await svc.run("c", "u", "x = 1")
        result = await svc.run("c", "u", f"#fake:{directive}")
        assert result.status is RunStatus.CRASHED and result.session_reset
        assert how in result.notices[-1]
        again = await svc.run("c", "u", "print('x' in globals())")
        assert again.text == "False\n"


async def test_restart_outside_a_run_ends_the_session_with_a_notice(fake: FakeGateway) -> None:
    async with gateway_service(fake) as svc:
        await svc.run("c", "u", "x = 1")
        (kernel_id,) = fake.kernels
        kernel = fake.kernels[kernel_id]
        await fake._broadcast(
            kernel,
            {
                "channel": "iopub",
                "header": {"msg_type": "status"},
                "parent_header": {},
                "content": {"execution_state": "restarting"},
            },
        )
        backend_kernels = svc._backend._kernels  # type: ignore[attr-defined]
        await until(lambda: not backend_kernels[kernel_id].alive)
        result = await svc.run("c", "u", "print('x' in globals())")
        assert result.text == "False\n"
        assert "restarted it" in result.notices[0]


async def test_culled_kernel_means_a_fresh_session_and_the_code_still_runs(
    fake: FakeGateway,
) -> None:
    async with gateway_service(fake) as svc:
        await svc.run("c", "u", "x = 1")
        (kernel_id,) = fake.kernels
        fake.cull(kernel_id)
        result = await svc.run("c", "u", "print('x' in globals())")
        assert result.status is RunStatus.OK and result.text == "False\n"
        assert result.notices == (GONE_NOTICE,) and result.session_reset
        assert len(fake.posts) == 2


async def test_gateway_down_says_so_and_other_backends_keep_working(fake: FakeGateway) -> None:
    async with (
        FakeGateway(token=TOKEN) as other,
        gateway_service(fake) as svc,
        gateway_service(other, name="cpu") as other_svc,
    ):
        assert (await svc.run("c:a", "a", "1")).ok
        await fake.stop()
        lost = await svc.run("c:a", "a", "1")  # an existing session
        assert lost.status is RunStatus.CRASHED and lost.session_reset
        assert "does not answer" in lost.notices[-1]
        with pytest.raises(GatewayUnreachable) as err:
            await svc.run("c:b", "b", "1")  # a new session
        assert err.value.user_message.startswith("/run on gpu is unavailable right now")
        state = await svc._backend.state()  # type: ignore[attr-defined]
        assert state is not None and not state.reachable and state.max_kernels == 8
        assert (await other_svc.run("c:a", "a", "print('fine')")).text == "fine\n"


async def test_interrupt_goes_through_the_rest_api(fake: FakeGateway) -> None:
    limits = LIMITS.model_copy(update=dict(wall_s=0.3))
    async with gateway_service(fake, limits) as svc:
        await svc.run("c", "u", "kept = 3")
        result = await svc.run("c", "u", "#fake:hang")
        assert result.status is RunStatus.TIMEOUT and not result.session_reset
        assert "Your variables are kept" in result.notices[0]
        assert fake.interrupts and (await svc.run("c", "u", "kept")).text == "3\n"


async def test_hostile_output_is_capped_and_cleaned(fake: FakeGateway) -> None:
    async with gateway_service(fake) as svc:
        garbage = await svc.run("c", "u", "#fake:garbage\nprint('\\x1b[31mred\\x1b[0m\\x00')")
        assert garbage.ok and garbage.text == "red\n"
        png = await svc.run("c", "u", f"#fake:png {LIMITS.max_image_bytes + 10}")
        assert png.images == () and png.images_dropped == 1
        assert any("over 100 kB left out" in n for n in png.notices)
        small = await svc.run("c", "u", "#fake:png 1000")
        assert len(small.images) == 1
        flood = await svc.run("c", "u", "#fake:flood 200")
        assert flood.status is RunStatus.OUTPUT_LIMIT and flood.output_truncated
        # one frame over the WebSocket size cap ends the connection, not the bot
        big = await svc.run("c", "u", "#fake:big 2000000")
        assert big.status is RunStatus.OUTPUT_LIMIT and big.session_reset
        assert (await svc.run("c", "u", "print('ok')")).text == "ok\n"


@pytest.mark.parametrize(
    "body", [b"not json at all", b'{"kernelspecs": 5}', b'{"x": "' + b"a" * 2_000_000 + b'"}']
)
async def test_malformed_gateway_answers_do_not_crash(fake: FakeGateway, body: bytes) -> None:
    fake.kernelspecs_body = body
    backend = GatewayBackend(settings(fake), LIMITS)
    try:
        await backend.check()  # logged, not fatal: the gateway may be fixed later
        state = await backend.state()
        assert not state.reachable
        assert state.detail is not None and "cannot use" in state.detail
    finally:
        await backend.aclose()


async def test_warm_pool_spares_are_anonymous_and_used_first(fake: FakeGateway) -> None:
    limits = LIMITS.model_copy(update=dict(pool_size=1))
    async with gateway_service(fake, limits, warm_pool_size=1) as svc:
        await svc.wait_until_warm()
        spare_user = fake.posts[0]["env"]["KERNEL_USERNAME"]
        assert spare_user.startswith("nbhelp-spare-")
        assert (await svc.run("c", "u", "print(1)")).text == "1\n"
        assert len(fake.ws_opens) == 1  # the spare's socket, no new kernel for this run


def test_kernel_limits_keep_sessions_and_spares_within_the_gateways_cap() -> None:
    gw = GatewaySettings(base_url="http://127.0.0.1:1", max_kernels=5, warm_pool_size=2)
    limits = gw.kernel_limits(KernelLimits(max_sessions=8, max_running=4))
    assert (limits.pool_size, limits.max_sessions, limits.max_running) == (2, 3, 3)
    assert limits.max_sessions + limits.pool_size <= gw.max_kernels
    with pytest.raises(ValueError):
        GatewaySettings(base_url="ftp://x")
    assert "abc" not in repr(GatewaySettings(base_url="http://h", token=SecretStr("abc")))
