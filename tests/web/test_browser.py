"""The status page in a real browser: Playwright driving the distribution's Chromium.

Playwright's own browser download is unreachable here, so it is pointed at Debian's
``chromium`` (``apt-get install chromium``; ``./dev`` and ``.ci/run`` install it). Without it
these tests skip, unless ``CI_REQUIRE_BROWSER=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.web.app import WebServer
from tests.web.helpers import SECRET_USER, Seeded

CHROMIUM = os.environ.get("NBHELP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


def _missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[web]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    why = _missing()
    if why:
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


class Watch:
    """Console errors, page errors, failed requests and bytes received, per page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.sizes: dict[str, int] = {}
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", lambda req: self.errors.append(f"failed: {req.url}"))
        page.on("response", self._response)
        self._pending: list[Any] = []

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.errors.append(f"console {msg.type}: {msg.text}")

    def _response(self, response: Any) -> None:
        self._pending.append(response)

    async def weight(self) -> int:
        for r in self._pending:
            sizes = await r.request.sizes()
            self.sizes[r.url] = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        return sum(self.sizes.values())


async def test_phone_page_verdicts_bar_tap_weight_no_errors(
    browser: Any, server: WebServer, seeded: Seeded
) -> None:
    # Without JavaScript: everything below must work with HTML and CSS alone.
    ctx = await browser.new_context(**PHONE, java_script_enabled=False, color_scheme="light")
    page = await ctx.new_page()
    watch = Watch(page)
    response = await page.goto(server.url + "/")
    assert response is not None and response.status == 200

    assert await page.locator("#p-kaggle .pill").inner_text() == "down"
    assert await page.locator("#p-colab .pill").inner_text() == "up"
    assert await page.locator("#p-codespaces .pill").inner_text() == "down"
    assert "2 platforms down" in await page.locator(".banner").first.inner_text()
    kaggle = page.locator("#p-kaggle")
    assert "Where to go instead" in await kaggle.inner_text()
    assert "2 people in 2 chats" in await kaggle.inner_text()
    body = await page.locator("body").inner_text()
    assert SECRET_USER not in body
    assert "<script>alert('x')</script> Codespaces <b>failing</b>" in body  # shown as text

    # fits a phone: nothing wider than the screen
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360

    # tap a day of the 90-day bar: its incidents appear
    day = seeded.old_incident_day
    panel = page.locator(f"#colab-{day}")
    assert not await panel.is_visible()
    await page.locator(f'#p-colab a[href="#colab-{day}"]').tap()
    await panel.wait_for(state="visible")
    text = await panel.inner_text()
    assert "HTTP 502 from colab" in text and "30 min" in text

    # light colours
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == (
        "rgb(255, 255, 255)"
    )
    assert (
        await page.locator("#p-kaggle .pill").evaluate("e => getComputedStyle(e).backgroundColor")
        == "rgb(207, 34, 46)"
    )

    weight = await watch.weight()
    assert weight < 100_000, watch.sizes
    assert any(u.endswith(".css") for u in watch.sizes)  # the stylesheet did load
    assert watch.errors == []
    await ctx.close()


async def test_dark_mode_colours(browser: Any, server: WebServer) -> None:
    ctx = await browser.new_context(**PHONE, color_scheme="dark")
    page = await ctx.new_page()
    watch = Watch(page)
    await page.goto(server.url + "/")
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == (
        "rgb(13, 17, 23)"
    )
    assert await page.evaluate("getComputedStyle(document.body).color") == "rgb(230, 237, 243)"
    assert (
        await page.locator("#p-kaggle .pill").evaluate("e => getComputedStyle(e).backgroundColor")
        == "rgb(248, 81, 73)"
    )
    assert (
        await page.locator("#p-colab .bar rect.f-up").first.evaluate(
            "e => getComputedStyle(e).fill"
        )
        == "rgb(63, 185, 80)"
    )
    assert watch.errors == []
    await ctx.close()


async def test_platform_page_chart_and_day_details(
    browser: Any, server: WebServer, seeded: Seeded
) -> None:
    ctx = await browser.new_context(**PHONE)
    page = await ctx.new_page()
    watch = Watch(page)
    await page.goto(server.url + "/p/colab")
    assert await page.locator("h1 .pill").inner_text() == "up"
    chart = page.locator("svg.chart")
    assert await chart.is_visible()
    box = await chart.bounding_box()
    assert box is not None and box["width"] > 300  # the chart spans the phone's width
    details = page.locator("details.dayd").last
    assert not await details.locator("li").is_visible()
    await details.locator("summary").tap()
    assert await details.locator("li").inner_text() == "down: HTTP 502 from colab"
    await page.locator("a", has_text="7 days").tap()
    await page.wait_for_url("**/p/colab?span=7d#chart")
    assert "last 7 days" in await page.locator("#chart + p").inner_text()
    assert watch.errors == []
    await ctx.close()
