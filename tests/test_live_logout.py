"""Live logout in real Chromium: a tab whose session ends elsewhere goes to /login/ by itself.

Each browser context stands for a device. Its user agent carries a tag, so Hypercorn's access
log says which worker (pid) accepted each device's /ws/session socket. A socket counts as open
once that log line is there: the server subscribes to the session's events before accepting.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    WebSocket,
    expect,
)
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from .conftest import PASSWORD, REDIS_URL, require
from .live_server import (
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
)

pytestmark = [pytest.mark.browser, pytest.mark.server]

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 10_000
# The promise under test: a tab lands on the login page this soon after its session ends.
LIVE_LOGOUT_MS = 2_000
SOCKET_TIMEOUT = 10.0
# Accept is random between workers; ten reloads all landing on one worker is ~1 in 1000.
MAX_RELOADS = 10
USERNAME = "Live.Logout"
NEW_PASSWORD = "purple tangerine bicycle orbit"
# Hypercorn's access log line for an accepted socket: the worker's pid and the user agent.
SOCKET_LINE = re.compile(
    r'\[(\d+)\] \[INFO\] \S+ - - \[[^\]]+\] "GET /ws/session 1\.1" 101 \S+ "[^"]*" "([^"]*)"'
)


@pytest.fixture
def redis_url() -> str:
    """The test Redis, reachable: the server's workers talk through it."""
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    assert REDIS_URL is not None
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        require(False, f"Redis at {REDIS_URL} is unreachable: {error!r}")
    finally:
        client.close()
    return REDIS_URL


@dataclass
class Tab:
    """One page, with what its console and sockets said, for the failure messages."""

    name: str
    page: Page
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.log.append(f"pageerror: {error}"))
        self.page.on("websocket", self._socket)

    def _console(self, message: ConsoleMessage) -> None:
        self.log.append(f"console.{message.type}: {message.text}")

    def _socket(self, socket: WebSocket) -> None:
        self.log.append(f"socket opened: {socket.url}")
        socket.on("framereceived", lambda payload: self.log.append(f"socket got: {payload!r}"))
        socket.on("socketerror", lambda error: self.log.append(f"socket error: {error}"))
        socket.on("close", lambda _: self.log.append("socket closed"))

    def report(self) -> str:
        lines = "\n".join(f"  {line}" for line in self.log) or "  (nothing)"
        return f"tab {self.name} at {self.page.url}:\n{lines}"


@dataclass
class Device:
    """A browser context of its own (cookies, user agent): a phone, a laptop.

    Its tabs navigate one at a time; `socket_pid` waits for the socket of the latest page.
    """

    server: LiveServer
    context: BrowserContext
    tag: str
    tabs: list[Tab] = field(default_factory=list)
    seen: int = 0  # this device's sockets in the access log when its last navigation began

    async def new_tab(self) -> Tab:
        tab = Tab(f"{self.tag}{len(self.tabs) + 1}", await self.context.new_page())
        self.tabs.append(tab)
        return tab

    def socket_pids(self) -> list[str]:
        """The pids of the workers that accepted this device's sockets, oldest first."""
        return [
            pid
            for pid, agent in SOCKET_LINE.findall(self.server.output())
            if agent.endswith(f" device/{self.tag}")
        ]

    async def socket_pid(self) -> str:
        """Wait for the socket of the page last opened; the pid of the worker serving it."""
        deadline = time.monotonic() + SOCKET_TIMEOUT
        while time.monotonic() < deadline:
            pids = self.socket_pids()
            if len(pids) > self.seen:
                return pids[-1]
            await asyncio.sleep(0.05)
        pytest.fail(
            f"device {self.tag} opened no /ws/session socket within {SOCKET_TIMEOUT} s\n"
            + diagnostics(self.server, self.tabs)
        )

    async def visit(self, tab: Tab, path: str) -> None:
        self.seen = len(self.socket_pids())
        await tab.page.goto(self.server.url + path)
        await expect(tab.page).to_have_url(self.server.url + path)

    async def reload(self, tab: Tab) -> None:
        self.seen = len(self.socket_pids())
        await tab.page.reload()

    async def register(self, tab: Tab, username: str) -> None:
        """Register through the form, as a person would, and land on the index."""
        self.seen = len(self.socket_pids())
        page = tab.page
        await page.goto(self.server.url + "/register/")
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_label("Confirm password").fill(PASSWORD)
        await page.get_by_role("button", name="Register").click()
        await expect(page).to_have_url(self.server.url + "/index/")

    async def log_in(self, tab: Tab, username: str, password: str = PASSWORD) -> None:
        self.seen = len(self.socket_pids())
        page = tab.page
        await page.goto(self.server.url + "/login/")
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password", exact=True).fill(password)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(self.server.url + "/index/")


DeviceFactory = Callable[[LiveServer, str], Awaitable[Device]]


@pytest.fixture
async def devices(
    browser: Browser,
) -> AsyncIterator[DeviceFactory]:
    """A factory of devices on one browser; each one's user agent ends with its tag."""
    probe = await browser.new_context()
    agent = await (await probe.new_page()).evaluate("navigator.userAgent")
    await probe.close()
    started: list[BrowserContext] = []

    async def factory(server: LiveServer, tag: str) -> Device:
        context = await browser.new_context(
            user_agent=f"{agent} device/{tag}", viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(TIMEOUT_MS)
        started.append(context)
        return Device(server, context, tag)

    yield factory
    for context in started:
        await context.close()


def diagnostics(server: LiveServer, tabs: list[Tab]) -> str:
    """What the tabs and the server said: the body of every failure message here."""
    output = server.output()
    return "\n".join(
        [*(tab.report() for tab in tabs), "server output (end):", output[-6000:] or "(nothing)"]
    )


def is_login(url: str) -> bool:
    return urlsplit(url).path == "/login/"


async def lands_on_login(
    server: LiveServer, tab: Tab, action: Awaitable[object], timeout_ms: int, tabs: list[Tab]
) -> float:
    """Do action and wait, at most timeout_ms from its start, for tab to reach /login/ alone.

    Returns the seconds it took.
    """
    start = time.monotonic()
    waiter = asyncio.ensure_future(tab.page.wait_for_url(is_login, timeout=timeout_ms))
    try:
        await action
        await waiter
    except PlaywrightTimeoutError:
        pytest.fail(
            f"tab {tab.name} was not on /login/ within {timeout_ms} ms\n"
            + diagnostics(server, tabs)
        )
    finally:
        if not waiter.done():
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
    return time.monotonic() - start


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def expect_reason(tab: Tab, next_path: str, reason: str, message: str) -> None:
    """The login page a live logout leads to: back to next_path, saying why."""
    assert query(tab.page.url) == {"next": [next_path], "reason": [reason]}, tab.page.url
    await expect(tab.page.locator(".notice")).to_contain_text(message)
    await expect(tab.page.get_by_role("button", name="Log in")).to_be_visible()


async def expect_logged_out(server: LiveServer, tab: Tab) -> None:
    """The session is over on the server too: the index sends the tab to the login form."""
    await tab.page.goto(server.url + "/index/")
    assert is_login(tab.page.url), tab.page.url


async def test_account_page_lists_the_sessions(
    live_servers: LiveServers, devices: DeviceFactory
) -> None:
    """The page the next tests click on, at desktop width (tests/screenshots/account.png)."""
    server = live_servers.start(workers=1)
    laptop, phone = await devices(server, "A"), await devices(server, "B")
    a, b = await laptop.new_tab(), await phone.new_tab()
    await laptop.register(a, USERNAME)
    await phone.log_in(b, USERNAME)
    await phone.visit(b, "/account/")

    await expect(b.page.get_by_role("heading", level=1)).to_have_text("Your account")
    await expect(b.page.locator(".sessions li.session")).to_have_count(2)
    current = b.page.locator(".sessions li.session.current")
    await expect(current).to_contain_text("This session")
    await expect(current.get_by_role("button")).to_have_count(0)
    other = b.page.locator(".sessions li.session:not(.current)")
    await expect(other.get_by_role("button", name="End this session")).to_have_count(1)
    await expect(b.page.get_by_role("button", name="Log out everywhere else")).to_have_count(1)
    SCREENSHOTS.mkdir(exist_ok=True)
    await b.page.screenshot(path=SCREENSHOTS / "account.png", full_page=True)


async def test_ending_a_session_from_another_device(
    live_servers: LiveServers, devices: DeviceFactory
) -> None:
    # One worker: without Redis the event reaches the sockets of its own process only.
    server = live_servers.start(workers=1)
    laptop, phone = await devices(server, "A"), await devices(server, "B")
    a, b = await laptop.new_tab(), await phone.new_tab()
    await laptop.register(a, USERNAME)
    await laptop.socket_pid()
    await phone.log_in(b, USERNAME)
    await phone.visit(b, "/account/")
    await phone.socket_pid()

    other = b.page.locator(".sessions li.session:not(.current)")
    end = other.get_by_role("button", name="End this session").click()
    await lands_on_login(server, a, end, LIVE_LOGOUT_MS, [a, b])
    await expect_reason(a, "/index/", "ended_elsewhere", "ended from another device")

    await expect(b.page).to_have_url(server.url + "/account/")
    await expect(b.page.locator(".flashes")).to_have_text("The session has been ended.")
    await expect(b.page.locator(".sessions li.session")).to_have_count(1)
    await expect_logged_out(server, a)


async def test_logout_in_one_tab_logs_out_the_other(
    live_servers: LiveServers, devices: DeviceFactory
) -> None:
    server = live_servers.start(workers=1)
    laptop = await devices(server, "B")
    first, second = await laptop.new_tab(), await laptop.new_tab()
    await laptop.register(first, USERNAME)
    await laptop.visit(first, "/account/")
    await laptop.socket_pid()
    await laptop.visit(second, "/index/")
    await laptop.socket_pid()

    log_out = second.page.locator("header").get_by_role("button", name="Log out").click()
    await lands_on_login(server, first, log_out, LIVE_LOGOUT_MS, [first, second])
    await expect_reason(first, "/account/", "logout", "You logged out in another tab.")

    # The tab where the button was clicked says so, not that some other tab logged out.
    await second.page.wait_for_url(is_login, wait_until="load")
    said = await second.page.locator(".flashes li, .notice").all_inner_texts()
    assert said == ["You have been logged out."], (
        f"the tab that logged out says {said}\n" + diagnostics(server, [first, second])
    )
    await expect_logged_out(server, first)


async def test_log_out_everywhere_else_across_workers(
    live_servers: LiveServers, devices: DeviceFactory, redis_url: str
) -> None:
    server = live_servers.start(env={"QUART_REDIS_URL": redis_url})  # hypercorn.toml: 2 workers
    laptop, phone = await devices(server, "A"), await devices(server, "B")
    a, b = await laptop.new_tab(), await phone.new_tab()
    await laptop.register(a, USERNAME)
    pid_a = await laptop.socket_pid()
    await phone.log_in(b, USERNAME)
    await phone.visit(b, "/account/")
    pid_b = await phone.socket_pid()
    reloads = 0
    while pid_b == pid_a and reloads < MAX_RELOADS:
        await phone.reload(b)
        pid_b = await phone.socket_pid()
        reloads += 1
    assert pid_a != pid_b, (
        f"both sockets stayed on worker {pid_a} after {reloads} reloads\n"
        + diagnostics(server, [a, b])
    )

    end_all = b.page.get_by_role("button", name="Log out everywhere else").click()
    await lands_on_login(server, a, end_all, LIVE_LOGOUT_MS, [a, b])
    await expect_reason(a, "/index/", "ended_elsewhere", "ended from another device")

    await expect(b.page).to_have_url(server.url + "/account/")
    await expect(b.page.locator(".flashes")).to_have_text("Logged out of 1 other session(s).")
    await expect(b.page.locator(".sessions li.session")).to_have_count(1)
    await expect_logged_out(server, a)


async def test_password_change_logs_out_the_other_device(
    live_servers: LiveServers, devices: DeviceFactory
) -> None:
    server = live_servers.start(workers=1)
    laptop, phone = await devices(server, "A"), await devices(server, "B")
    a, b = await laptop.new_tab(), await phone.new_tab()
    await laptop.register(a, USERNAME)
    await laptop.socket_pid()
    await phone.log_in(b, USERNAME)
    await phone.visit(b, "/account/password/")
    await phone.socket_pid()

    await b.page.get_by_label("Current password").fill(PASSWORD)
    await b.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await b.page.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    change = b.page.get_by_role("button", name="Change password").click()
    await lands_on_login(server, a, change, LIVE_LOGOUT_MS, [a, b])
    await expect_reason(a, "/index/", "password_changed", "Your password was changed")

    await expect(b.page).to_have_url(server.url + "/account/")
    await expect(b.page.locator(".flashes")).to_contain_text("Your password has been changed.")
    await expect_logged_out(server, a)
    await laptop.log_in(a, USERNAME, NEW_PASSWORD)


async def test_a_socket_does_not_outlive_its_session(
    live_servers: LiveServers, devices: DeviceFactory
) -> None:
    server = live_servers.start(workers=1, env={"QUART_SESSION_IDLE_TIMEOUT": "2"})
    laptop = await devices(server, "A")
    a = await laptop.new_tab()
    await laptop.register(a, USERNAME)
    await laptop.socket_pid()

    # Nothing happens in the tab: the server's own clock ends the session and tells it.
    took = await lands_on_login(server, a, asyncio.sleep(0), 4_000, [a])
    await expect_reason(a, "/index/", "expired", "expired")
    assert took > 0.5, f"logged out after {took:.2f} s, before the 2 s idle timeout"
    await expect_logged_out(server, a)
