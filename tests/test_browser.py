"""A person in a real browser: register, see their name, log out, log in, be remembered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Cookie, Page, expect

from .conftest import PASSWORD
from .live_server import (
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
)

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
AUTH_COOKIE = "quart_app_auth"
TIMEOUT_MS = 10_000
THIRTY_DAYS = 30 * 24 * 3600


@pytest.fixture
def server(live_servers: LiveServers) -> LiveServer:
    return live_servers.start()


async def new_page(browser: Browser) -> tuple[BrowserContext, Page]:
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    return context, await context.new_page()


async def register(page: Page, server: LiveServer, username: str) -> None:
    """Fill the register form by its labels, as a person would."""
    await page.goto(server.url + "/register/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Confirm password").fill(PASSWORD)
    await page.get_by_role("button", name="Register").click()
    await expect(page).to_have_url(server.url + "/index/")


async def log_in(page: Page, server: LiveServer, username: str, *, remember: bool) -> None:
    await page.goto(server.url + "/login/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    if remember:
        await page.get_by_label("Remember me").check()
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(server.url + "/index/")


async def landing_url(browser: Browser, server: LiveServer, cookies: list[Cookie]) -> str:
    """Where a new browser, given only these cookies, ends up when it asks for /index/."""
    context, page = await new_page(browser)
    try:
        await context.add_cookies(
            [
                {
                    "name": cookie["name"],
                    "value": cookie["value"],
                    "domain": cookie["domain"],
                    "path": cookie["path"],
                    "expires": cookie["expires"],
                    "httpOnly": cookie["httpOnly"],
                    "secure": cookie["secure"],
                    "sameSite": cookie["sameSite"],
                }
                for cookie in cookies
            ]
        )
        response = await page.goto(server.url + "/index/")
        assert response is not None
        assert response.ok
        return page.url
    finally:
        await context.close()


def auth_cookie(cookies: list[Cookie]) -> Cookie:
    matches = [cookie for cookie in cookies if cookie.get("name") == AUTH_COOKIE]
    assert len(matches) == 1, cookies
    return matches[0]


async def test_register_see_name_log_out(browser: Browser, server: LiveServer) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    context, page = await new_page(browser)
    await register(page, server, "Zoë-Browser")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Zoë-Browser!")
    await expect(page.locator("header")).to_contain_text("Zoë-Browser")
    await page.screenshot(path=SCREENSHOTS / "index.png", full_page=True)

    cookies = await context.cookies()
    auth_cookie(cookies)
    # Replaying into a new browser must work now, or the check after logout proves nothing.
    assert await landing_url(browser, server, cookies) == server.url + "/index/"

    await page.locator("header").get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(server.url + "/login/")
    await expect(page.get_by_role("status")).to_contain_text("You have been logged out.")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await page.screenshot(path=SCREENSHOTS / "login.png", full_page=True)

    assert (await landing_url(browser, server, cookies)).startswith(server.url + "/login/")
    await page.goto(server.url + "/index/")
    assert page.url.startswith(server.url + "/login/")
    await context.close()


async def test_remember_me_sets_a_thirty_day_cookie(browser: Browser, server: LiveServer) -> None:
    context, page = await new_page(browser)
    await register(page, server, "Remembered")
    await context.close()

    context, page = await new_page(browser)
    before = time.time()
    await log_in(page, server, "Remembered", remember=True)
    remembered = auth_cookie(await context.cookies())
    await context.close()
    expires = remembered.get("expires", -1)
    assert abs(expires - (before + THIRTY_DAYS)) < 3600, (expires, before)

    context, page = await new_page(browser)
    await log_in(page, server, "Remembered", remember=False)
    await expect(page.locator(".username")).to_have_text("Remembered")
    session_only = auth_cookie(await context.cookies())
    await context.close()
    assert session_only.get("expires") == -1
