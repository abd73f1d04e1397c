"""A person in Chromium: register with an address, verify it, forget the password, reset it.

The server runs as `make run` does with no mail server: each mail is an .eml file in
instance/outbox/, and the person opens the link written in it.
"""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, expect

from .live_server import (
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
)
from .smtp_server import link_in
from .test_i18n_browser import CHINESE, ENGLISH, Language, open_page

pytestmark = [pytest.mark.browser, pytest.mark.server]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
OLD_PASSWORD = "first passphrase of mine"
NEW_PASSWORD = "second passphrase of mine"


def mails(server: LiveServer) -> list[EmailMessage]:
    folder = server.instance_path / "outbox"
    files = sorted(folder.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in files]


def wait_for_mail(server: LiveServer, subject: str, timeout: float = 30.0) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in mails(server) if m["Subject"] == subject]
        if found:
            return found[-1]
        time.sleep(0.1)
    pytest.fail(f"no mail {subject!r} in {server.instance_path / 'outbox'}")


@pytest.mark.parametrize("language", [ENGLISH, CHINESE], ids=["en", "zh"])
async def test_forgot_reset_and_log_in(
    browser: Browser, live_servers: LiveServers, language: Language
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    server = live_servers.start(env={"QUART_MAIL_POLL_INTERVAL": "0.2"})
    t = language.t
    context, page = await open_page(browser, language)
    await page.goto(server.url + "/register/")
    await page.get_by_label(t("Username"), exact=True).fill("ada")
    await page.get_by_label(t("Email (optional, to reset a forgotten password)")).fill(
        "ada@example.com"
    )
    await page.get_by_label(t("Password"), exact=True).fill(OLD_PASSWORD)
    await page.get_by_label(t("Confirm password"), exact=True).fill(OLD_PASSWORD)
    await page.locator("main").get_by_role("button", name=t("Register"), exact=True).click()
    await expect(page).to_have_url(server.url + "/index/")

    verify = wait_for_mail(server, t("Confirm your email address"))
    await page.goto(server.url + urlsplit(link_in(verify)).path)
    await expect(page).to_have_url(server.url + "/account/email/")
    await expect(page.get_by_text(t("verified"), exact=True)).to_be_visible()
    await page.locator("header").get_by_role("button", name=t("Log out"), exact=True).click()
    await expect(page).to_have_url(server.url + "/login/")

    await page.get_by_role("link", name=t("Forgot your password?")).click()
    await page.get_by_label(t("Username or email"), exact=True).fill("ada@example.com")
    await page.locator("main").get_by_role("button", name=t("Send the link")).click()
    await expect(page.locator("main .notice")).to_be_visible()

    reset = wait_for_mail(server, t("Reset your password"))
    await page.goto(server.url + urlsplit(link_in(reset)).path)
    await expect(page).to_have_url(server.url + "/reset-password/")  # the token is gone
    await page.screenshot(path=SCREENSHOTS / f"reset-password-{language}-desktop.png")
    await page.get_by_label(t("New password"), exact=True).fill(NEW_PASSWORD)
    await page.get_by_label(t("Confirm new password"), exact=True).fill(NEW_PASSWORD)
    await page.locator("main").get_by_role("button", name=t("Set the new password")).click()
    await expect(page).to_have_url(server.url + "/login/")

    await page.get_by_label(t("Username"), exact=True).fill("ada")
    await page.get_by_label(t("Password"), exact=True).fill(NEW_PASSWORD)
    await page.locator("main").get_by_role("button", name=t("Log in"), exact=True).click()
    await expect(page).to_have_url(server.url + "/index/")
    done = wait_for_mail(server, t("Your password was reset"))
    assert done["To"] == "ada@example.com"
    await context.close()
