"""Passkeys and TOTP in real Chromium, with its virtual authenticator (DevTools' WebAuthn domain).

The server is opened at http://localhost:PORT, its PUBLIC_URL: browsers refuse an IP address
as a relying party id.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import Browser, BrowserContext, CDPSession, Page, expect

from .conftest import PASSWORD, require
from .live_server import LiveServer, free_port, launch
from .test_accessibility import AXE, FAILING_IMPACTS, RUN_AXE

pytestmark = [pytest.mark.browser, pytest.mark.server]

TIMEOUT_MS = 15_000
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


@dataclass
class Site:
    """A live server, and the origin a browser must use for it."""

    server: LiveServer
    url: str


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    port = free_port()
    origin = f"http://localhost:{port}"
    server = launch(tmp_path, port=port, env={"QUART_PUBLIC_URL": origin}, workers=1)
    try:
        server.wait_until_serving()
        yield Site(server, origin)
    finally:
        server.stop()


async def browser_with_authenticator(
    browser: Browser, *, bypass_csp: bool = False
) -> tuple[BrowserContext, Page, CDPSession, str]:
    """A new profile whose tab has a platform authenticator that verifies its user.

    bypass_csp lets axe-core be injected; without it the site's CSP holds, as in real use.
    """
    context = await browser.new_context(bypass_csp=bypass_csp)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    return context, page, cdp, added["authenticatorId"]


async def no_serious_violations(page: Page) -> None:
    """axe-core on the page as it is now (the accessibility walk has no authenticator)."""
    require(AXE.exists(), f"axe-core is not installed at {AXE}: run `npm ci --prefix tests`")
    await page.add_script_tag(path=AXE)
    found = await page.evaluate(RUN_AXE)
    serious = [rule for rule in found if rule["impact"] in FAILING_IMPACTS]
    assert not serious, serious


async def register(page: Page, site: Site, username: str) -> None:
    await page.goto(site.url + "/register/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Confirm password").fill(PASSWORD)
    await page.get_by_role("button", name="Register").click()
    await expect(page).to_have_url(site.url + "/index/")


async def add_passkey(page: Page, site: Site, name: str) -> None:
    await page.goto(site.url + "/account/passkeys/")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Add a passkey").click()
    await expect(page.locator(".passkeys")).to_contain_text(name)


async def log_out(page: Page, site: Site) -> None:
    await page.locator("header").get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(site.url + "/login/")


async def enable_totp(page: Page, site: Site) -> str:
    """Turn TOTP on through the page, reading the secret as a phone app would from the code."""
    await page.goto(site.url + "/account/two-factor/")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Set up an authenticator app").click()
    await expect(page.locator("img.qr")).to_be_visible()
    secret = await page.locator("code.secret").inner_text()
    uri = await page.locator("code.uri").inner_text()
    assert pyotp.parse_uri(uri).secret == secret
    await page.get_by_label("Code", exact=True).fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.locator("ul.codes li")).to_have_count(10)
    return secret


async def password_step(page: Page, site: Site, username: str) -> None:
    await page.goto(site.url + "/login/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.locator("main").get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(site.url + "/login/two-factor/")


async def test_add_a_passkey_and_sign_in_with_it_alone(browser: Browser, site: Site) -> None:
    """Under the site's own CSP: the passkey script is a static file, nothing inline."""
    context, page, cdp, authenticator = await browser_with_authenticator(browser)
    await register(page, site, "Ada")
    await add_passkey(page, site, "Laptop")
    stored = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1
    assert stored["credentials"][0]["isResidentCredential"] is True
    assert stored["credentials"][0]["rpId"] == "localhost"
    await log_out(page, site)

    await page.get_by_role("button", name="Sign in with a passkey").click()
    await expect(page).to_have_url(site.url + "/index/")
    await expect(page.locator("header .who")).to_have_text("Ada")
    await page.goto(site.url + "/account/passkeys/")
    await expect(page.locator(".passkeys")).to_contain_text("last used")
    # The authenticator's counter moved, and the server kept up with it.
    used = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert used["credentials"][0]["signCount"] >= 1
    await context.close()


async def test_a_passkey_as_the_second_factor(browser: Browser, site: Site) -> None:
    context, page, cdp, authenticator = await browser_with_authenticator(browser, bypass_csp=True)
    await register(page, site, "Other")
    await add_passkey(page, site, "Other's key")
    await log_out(page, site)
    await register(page, site, "Grace")
    await enable_totp(page, site)
    await add_passkey(page, site, "Phone")
    await no_serious_violations(page)  # the list of passkeys, with its forms
    await log_out(page, site)

    await password_step(page, site, "Grace")
    # A credential of another user is refused, even from the same authenticator.
    credentials = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))[
        "credentials"
    ]
    others = [c for c in credentials if c["userName"] == "Other"]
    assert len(others) == 1
    answer = await page.evaluate(FOREIGN_ASSERTION, others[0]["credentialId"])
    assert answer == {"status": 401, "error": "invalid_passkey"}
    response = await page.request.get(site.url + "/api/me")
    assert response.status == 401

    await no_serious_violations(page)  # the second step with its passkey button shown
    await page.get_by_role("button", name="Use a passkey").click()
    await expect(page).to_have_url(site.url + "/index/")
    await expect(page.locator("header .who")).to_have_text("Grace")
    await context.close()


async def test_totp_code_finishes_a_login_in_the_browser(browser: Browser, site: Site) -> None:
    context, page, _cdp, _authenticator = await browser_with_authenticator(browser)
    await register(page, site, "Linus")
    secret = await enable_totp(page, site)
    await log_out(page, site)
    await password_step(page, site, "Linus")
    await page.goto(site.url + "/index/")
    assert page.url.startswith(site.url + "/login/")  # the password alone is not a login
    await page.goto(site.url + "/login/two-factor/")
    totp = pyotp.TOTP(secret)
    # The code that turned it on is spent: the next step's code, which the window accepts.
    await page.get_by_label("Code", exact=True).fill(totp.at(int(time.time()) + 30))
    await page.get_by_role("button", name="Verify").click()
    await expect(page).to_have_url(site.url + "/index/")
    await context.close()


# The second step's options, asked of the server, answered with a foreign credential.
FOREIGN_ASSERTION = """async (credentialId) => {
    const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")
        + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
    const text = (b) => btoa(String.fromCharCode(...new Uint8Array(b)))
        .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
    const post = (url, body) => fetch(url, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
    const options = (await (await post("/api/login/two-factor/passkey/options")).json()).options;
    options.challenge = bytes(options.challenge);
    options.allowCredentials = [{type: "public-key", id: bytes(credentialId)}];
    const credential = await navigator.credentials.get({publicKey: options});
    const r = credential.response;
    const answer = await post("/api/login/two-factor/passkey", {credential: {
        id: credential.id, rawId: text(credential.rawId), type: credential.type,
        clientExtensionResults: {},
        response: {clientDataJSON: text(r.clientDataJSON),
                   authenticatorData: text(r.authenticatorData),
                   signature: text(r.signature),
                   userHandle: r.userHandle ? text(r.userHandle) : null}}});
    return {status: answer.status, error: (await answer.json()).error};
}"""
