"""Both languages in real Chromium: the tutorial's flow, the language switch, the password toggle.

The texts are looked up in the Chinese catalogue, so a better translation does not break a test
while a missing one does; the greeting is also checked word for word.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import pytest
from babel.messages.pofile import read_po
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
)

from .conftest import PASSWORD
from .live_server import (
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
)

pytestmark = [pytest.mark.browser, pytest.mark.server]

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "quart_app" / "translations" / "zh" / "LC_MESSAGES" / "messages.po"
TIMEOUT_MS = 10_000
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 360, "height": 740}
COMMON_PASSWORD = "password1"
ColorScheme = Literal["light", "dark"]


@cache
def chinese() -> dict[str, str]:
    """The Chinese catalogue: English message id -> translation."""
    with CATALOGUE.open("rb") as file:
        catalog = read_po(file)
    return {
        m.id: m.string
        for m in catalog
        if isinstance(m.id, str) and isinstance(m.string, str) and m.string and not m.fuzzy
    }


@dataclass(frozen=True)
class Language:
    """One of the site's languages, as a browser set to it asks for it and sees it."""

    code: str  # the site's code, as in /language/<code>
    name: str  # its name in itself, the header's link text
    locale: str  # the browser's locale
    html_lang: str  # what <html lang> must say
    greeting: str  # the index page's heading, written out in full

    def t(self, message: str, **values: str) -> str:
        """The text a visitor sees for message, in this language."""
        text = message if self.code == "en" else chinese()[message]
        return text % values if values else text

    def __str__(self) -> str:
        return self.code


ENGLISH = Language("en", "English", "en-US", "en", "Hello, {}!")
CHINESE = Language("zh", "中文", "zh-CN", "zh-CN", "你好，{}！")
LANGUAGES = [ENGLISH, CHINESE]


@pytest.fixture(name="server")
def server_fixture(live_servers: LiveServers) -> LiveServer:
    return live_servers.start()


async def open_page(
    browser: Browser,
    language: Language,
    *,
    viewport: ViewportSize = DESKTOP,
    color_scheme: ColorScheme = "light",
    bypass_csp: bool = False,
) -> tuple[BrowserContext, Page]:
    """A new browser profile set to language, as a person in that country has it."""
    context = await browser.new_context(
        locale=language.locale,
        extra_http_headers={"Accept-Language": f"{language.locale},{language.code};q=0.9"},
        viewport=viewport,
        color_scheme=color_scheme,
        bypass_csp=bypass_csp,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context, await context.new_page()


async def fill_register_form(page: Page, language: Language, username: str, password: str) -> None:
    """Fill the register form by its labels, as a person would, and send it."""
    t = language.t
    await page.get_by_label(t("Username"), exact=True).fill(username)
    await page.get_by_label(t("Password"), exact=True).fill(password)
    await page.get_by_label(t("Confirm password"), exact=True).fill(password)
    await page.locator("main").get_by_role("button", name=t("Register"), exact=True).click()


async def register(page: Page, server: LiveServer, language: Language, username: str) -> None:
    await page.goto(server.url + "/register/")
    await fill_register_form(page, language, username, PASSWORD)
    await expect(page).to_have_url(server.url + "/index/")


async def log_in(page: Page, server: LiveServer, language: Language, username: str) -> None:
    t = language.t
    await page.get_by_label(t("Username"), exact=True).fill(username)
    await page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    await page.locator("main").get_by_role("button", name=t("Log in"), exact=True).click()
    await expect(page).to_have_url(server.url + "/index/")


async def expect_language(page: Page, language: Language) -> None:
    await expect(page.locator("html")).to_have_attribute("lang", language.html_lang)


async def expect_greeting(page: Page, language: Language, username: str) -> None:
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_have_text(language.greeting.format(username))
    await expect(heading).to_have_text(language.t("Hello, %(name)s!", name=username))
    await expect(page.locator("header .who")).to_have_text(username)


@pytest.mark.parametrize(
    ("language", "username"), [(ENGLISH, "Amelia.Pond"), (CHINESE, "张伟")], ids=["en", "zh"]
)
async def test_register_refused_then_welcome_log_out_log_in(
    browser: Browser, server: LiveServer, language: Language, username: str
) -> None:
    t = language.t
    context, page = await open_page(browser, language)
    await page.goto(server.url + "/register/")
    await expect_language(page, language)
    await expect(page.get_by_role("heading", level=1)).to_have_text(t("Register"))

    # A password everyone uses: refused, the reason at the field, in the visitor's language.
    await fill_register_form(page, language, username, COMMON_PASSWORD)
    await expect(page).to_have_url(server.url + "/register/")
    await expect_language(page, language)
    password = page.get_by_label(t("Password"), exact=True)
    reason = t("This password is too common. Please choose another.")
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(password).to_have_attribute("aria-describedby", "password-error")
    await expect(page.locator("#password-error")).to_have_text(reason)
    await expect(password).to_have_accessible_description(reason)
    await expect(page.get_by_label(t("Username"), exact=True)).to_have_value(username)

    await fill_register_form(page, language, username, PASSWORD)
    await expect(page).to_have_url(server.url + "/index/")
    await expect_language(page, language)
    await expect_greeting(page, language, username)
    welcome = t("Welcome, %(name)s! Your account has been created.", name=username)
    await expect(page.get_by_role("status")).to_have_text(welcome)

    await page.locator("header").get_by_role("button", name=t("Log out"), exact=True).click()
    await expect(page).to_have_url(server.url + "/login/")
    await expect_language(page, language)
    await expect(page.get_by_role("status")).to_have_text(t("You have been logged out."))
    await page.goto(server.url + "/index/")
    await expect(page).to_have_url(server.url + "/login/?next=%2Findex%2F")

    await log_in(page, server, language, username)
    await expect_greeting(page, language, username)
    await context.close()


@pytest.mark.parametrize(("start", "target"), [(ENGLISH, CHINESE), (CHINESE, ENGLISH)], ids=str)
async def test_language_link_switches_and_is_remembered(
    browser: Browser, server: LiveServer, start: Language, target: Language
) -> None:
    context, page = await open_page(browser, start)
    here = server.url + "/login/?next=%2Faccount%2F"
    await page.goto(here)
    await expect_language(page, start)
    languages = page.locator("header .languages")
    await expect(languages.locator("[aria-current]")).to_have_text(start.name)

    await languages.get_by_role("link", name=target.name, exact=True).click()
    await expect(page).to_have_url(here)  # back where the visitor was, query and all
    await expect_language(page, target)
    await expect(page.get_by_role("heading", level=1)).to_have_text(target.t("Log in"))
    await expect(languages.locator("[aria-current]")).to_have_text(target.name)
    assert {c["name"]: c.get("value") for c in await context.cookies()}.get("lang") == target.code

    # The choice outlives the page: a new page in the same browser, whatever it asks for.
    second = await context.new_page()
    await second.goto(server.url + "/register/")
    await expect_language(second, target)
    await expect(second.get_by_role("heading", level=1)).to_have_text(target.t("Register"))
    await context.close()

    # A browser without the cookie still gets its own language.
    context, page = await open_page(browser, start)
    await page.goto(server.url + "/register/")
    await expect_language(page, start)
    await context.close()


@pytest.mark.parametrize("language", LANGUAGES, ids=str)
async def test_show_password_toggles_and_submits_as_password(
    browser: Browser, server: LiveServer, language: Language
) -> None:
    t = language.t
    context, page = await open_page(browser, language)
    await page.goto(server.url + "/register/")
    password = page.get_by_label(t("Password"), exact=True)
    confirm = page.get_by_label(t("Confirm password"), exact=True)
    toggle = page.locator('button.reveal[aria-controls="password"]')
    await expect(toggle).to_be_visible()
    await expect(toggle).to_have_text(t("Show"))
    await expect(password).to_have_attribute("type", "password")

    await password.fill(PASSWORD)
    await toggle.click()
    await expect(password).to_have_attribute("type", "text")
    await expect(password).to_have_value(PASSWORD)
    await expect(toggle).to_have_text(t("Hide"))
    await expect(confirm).to_have_attribute("type", "password")  # each field on its own

    await toggle.click()
    await expect(password).to_have_attribute("type", "password")
    await expect(toggle).to_have_text(t("Show"))

    # Sent while shown, the field is a password field again when the browser reads the form.
    # This listener runs after forms.js's (added earlier, on DOMContentLoaded).
    await toggle.click()
    await expect(password).to_have_attribute("type", "text")
    await page.evaluate(
        """() => {
            const field = document.getElementById("password");
            field.form.addEventListener("submit", () => {
                sessionStorage.setItem("typeAtSubmit", field.type);
            });
        }"""
    )
    await fill_register_form(page, language, "Toggler", PASSWORD)
    await expect(page).to_have_url(server.url + "/index/")
    assert await page.evaluate("sessionStorage.getItem('typeAtSubmit')") == "password"
    await context.close()
