"""Bad input: unknown routes, traversal, HTML in ids, absurd parameters, a crowd of requests.

Each gets a clear 4xx (or its page), nothing sent is echoed, nothing crashes, and the chat side
keeps answering while the web side is flooded.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from bot.core.app import Core
from bot.metrics import Metrics
from bot.web.app import WebServer
from bot.web.serve import build_web
from bot.web.settings import WebSettings
from tests.conftest import Chat


async def raw_get(server: WebServer, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as written (a client library would normalise the path)."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1")
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/p/../../etc/passwd",
        "/p/..%2F..%2Fetc%2Fpasswd",
        "/p/%2e%2e/%2e%2e/etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/badge/..%2F..%2Fetc%2Fpasswd.svg",
        "/api/v1/platforms/..%2F..%2Fetc%2Fpasswd",
        "//etc/passwd",
    ],
)
async def test_path_traversal_is_a_404(server: WebServer, target: str) -> None:
    status, body = await raw_get(server, target)
    assert status == 404
    assert b"root:" not in body and b"passwd" not in body


async def test_unknown_route_is_a_short_404(http: aiohttp.ClientSession) -> None:
    async with http.get("/wp-admin/setup.php?x=<svg/onload=alert(1)>") as r:
        assert r.status == 404 and r.headers["Content-Type"].startswith("text/html")
        text = await r.text()
    assert "There is no page at this address." in text
    assert "wp-admin" not in text and "onload" not in text
    async with http.get("/api/v9/nothing.json") as r:
        assert r.status == 404
        assert (await r.json())["error"]["status"] == 404


async def test_platform_id_with_html_is_escaped_never_echoed(http: aiohttp.ClientSession) -> None:
    for pid in ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "colab<b>"):
        for path in ("/p/{}", "/api/v1/platforms/{}", "/badge/{}.svg", "/p/{}/feed.atom"):
            async with http.get(path.format(aiohttp.helpers.quote(pid, safe=""))) as r:
                assert r.status == 404, (path, pid)
                text = await r.text()
            assert "<script>alert" not in text and "onerror" not in text and "<b>" not in text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/incidents.json?limit=-1",
        "/api/v2/incidents.json?limit=0",
        "/api/v2/incidents.json?limit=abc",
        "/api/v2/incidents.json?limit=1e3",
        "/api/v2/incidents.json?limit=99999999999999999999999999",
        "/api/v2/incidents.json?limit=%EF%BC%91",  # a full-width digit
        "/feed.atom?limit=501",
        "/p/colab?span=<script>",
        "/p/colab?span=365d",
    ],
)
async def test_absurd_query_parameters_are_a_400(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as r:
        assert r.status == 400
        text = await r.text()
    assert "must be" in text and "<script>" not in text and "9999999" not in text


async def test_unknown_parameters_are_ignored_and_huge_ones_refused(
    http: aiohttp.ClientSession, server: WebServer
) -> None:
    async with http.get("/?utm_source=x&a=1&a=2&" + "&".join(f"k{i}=v" for i in range(300))) as r:
        assert r.status == 200
    status, _ = await raw_get(server, "/?q=" + "x" * 20_000)
    assert 400 <= status < 500
    async with http.get("/healthz") as r:  # still serving
        assert r.status == 200


async def test_other_methods_are_refused(http: aiohttp.ClientSession) -> None:
    for method in ("POST", "PUT", "DELETE"):
        async with http.request(method, "/", data=b"x") as r:
            assert r.status == 405 and r.headers["Allow"] == "GET,HEAD"
    async with http.head("/") as r:
        assert r.status == 200


async def test_no_kernel_pool_or_admin_routes(http: aiohttp.ClientSession) -> None:
    for path in ("/run", "/api/run", "/admin", "/kernels", "/api/v1/kernels", "/reset"):
        async with http.get(path) as r:
            assert r.status == 404, path
        async with http.post(path, data=b"print(1)") as r:
            assert r.status in (404, 405), path


async def test_a_thousand_concurrent_requests_while_the_chat_answers(core: Core) -> None:
    srv = build_web(core, WebSettings(host="127.0.0.1", port=0, cache_s=60), metrics=Metrics())
    await srv.start()
    try:
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(srv.url, connector=conn) as http:

            async def one() -> tuple[int, int]:
                async with http.get("/") as r:
                    return r.status, len(await r.read())

            flood = [asyncio.ensure_future(one()) for _ in range(1000)]
            try:
                reply = await Chat(core).say("/platforms")  # answered amid the flood
            finally:
                results = await asyncio.gather(*flood)
        assert "Free notebook platforms" in reply and "kaggle" in reply
        assert {s for s, _ in results} == {200}
        assert len({n for _, n in results}) == 1  # every visitor got the same page
        async with aiohttp.ClientSession(srv.url) as http, http.get("/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
    finally:
        await srv.stop()


async def test_a_failing_store_is_a_500_with_an_error_id(
    seeded: object, web_settings: WebSettings, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.web.data import StoreStatusData
    from tests.web.helpers import Seeded

    assert isinstance(seeded, Seeded)
    data = StoreStatusData(seeded.store, seeded.platforms, seeded.settings, clock=seeded.clock)

    async def broken() -> object:
        raise RuntimeError("disk on fire with token 123:ABC")

    data.overview = broken  # type: ignore[method-assign]
    srv = WebServer(web_settings, data, metrics=Metrics())
    await srv.start()
    try:
        async with aiohttp.ClientSession(srv.url) as http:
            async with http.get("/") as r:
                assert r.status == 500
                text = await r.text()
            assert "Something went wrong" in text and "Error id:" in text
            assert "disk on fire" not in text and "123:ABC" not in text
            async with http.get("/api/v2/summary.json") as r:
                assert r.status == 500
                body = json.loads(await r.text())
            assert len(body["error"]["error_id"]) == 8
            async with http.get("/metrics") as r:  # still answers without the store
                assert r.status == 200
    finally:
        await srv.stop()
    assert body["error"]["error_id"] in caplog.text
