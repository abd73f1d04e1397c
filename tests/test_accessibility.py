"""Every page in both languages, light and dark: axe-core finds nothing serious, and screenshots.

axe-core comes from the npm registry (`npm ci --prefix tests`) and is injected by Playwright.
Each page is also photographed at phone (360 px) and desktop width into tests/screenshots/;
the login and index pages, light, go to docs/screenshots/ as well, for the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from .conftest import PASSWORD, require
from .live_server import (
    LiveServer,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
)
from .test_i18n_browser import (
    CHINESE,
    COMMON_PASSWORD,
    DESKTOP,
    ENGLISH,
    PHONE,
    ColorScheme,
    Language,
    expect_language,
    fill_register_form,
    log_in,
    open_page,
    register,
    server_fixture,  # noqa: F401  (the server fixture)
)

pytestmark = [pytest.mark.browser, pytest.mark.server]

TESTS = Path(__file__).resolve().parent
AXE = TESTS / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = TESTS / "screenshots"
DOCS_SCREENSHOTS = TESTS.parent / "docs" / "screenshots"
FAILING_IMPACTS = {"serious", "critical"}
WIDTHS: dict[str, ViewportSize] = {"phone": PHONE, "desktop": DESKTOP}
# The pages the README shows, light, viewport only (docs/screenshots/ is committed).
DOCUMENTED = {"login", "index", "two-factor-enrol", "second-step", "passkeys", "forgot-password"}
USERNAMES = {"en": "Amelia.Pond", "zh": "张伟"}

# Only violations cross the page boundary, trimmed to what a report needs.
RUN_AXE = """async () => {
    const results = await axe.run(document, { resultTypes: ["violations"] });
    return results.violations.map((rule) => ({
        id: rule.id,
        impact: rule.impact,
        help: rule.help,
        helpUrl: rule.helpUrl,
        nodes: rule.nodes.map((node) => ({
            target: JSON.stringify(node.target),
            html: node.html,
            summary: node.failureSummary || "",
        })),
    }));
}"""
# Wider than the window: the page scrolls sideways on a phone.
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll("body *")]
        .filter((element) => element.getBoundingClientRect().right > width + 1)
        .map((element) => element.outerHTML.slice(0, 120));
    return { scrollWidth: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5) };
}"""


async def sideways(page: Page) -> str:
    """What sticks out of the window on the right, if anything does."""
    layout = await page.evaluate(OVERFLOW)
    return str(layout) if layout["scrollWidth"] > layout["width"] else ""


@dataclass
class Findings:
    """What the pages showed, gathered over the whole walk so that one run reports it all."""

    axe: Path
    language: Language
    scheme: ColorScheme
    violations: list[str] = field(default_factory=list)
    minor: list[str] = field(default_factory=list)
    overflows: list[str] = field(default_factory=list)

    def record(self, name: str, path: str, found: list[dict[str, Any]]) -> None:
        for rule in found:
            where = f"{path} [{name}, {self.language}, {self.scheme}]"
            lines = [f"[{rule['impact']}] {rule['id']} on {where}: {rule['help']}"]
            lines.append(f"    {rule['helpUrl']}")
            for node in rule["nodes"]:
                lines.append(f"    {node['target']}: {node['html']}")
                lines.extend(f"        {line}" for line in node["summary"].splitlines())
            report = "\n".join(lines)
            if rule["impact"] in FAILING_IMPACTS:
                self.violations.append(report)
            else:
                self.minor.append(report)


async def examine(page: Page, findings: Findings, name: str) -> None:
    """Run axe-core on the page as it is, photograph it at both widths, look for overflow."""
    language, scheme = findings.language, findings.scheme
    await expect_language(page, language)
    await page.add_script_tag(path=findings.axe)
    findings.record(name, urlsplit(page.url).path, await page.evaluate(RUN_AXE))

    suffix = "" if scheme == "light" else f"-{scheme}"
    for width, viewport in WIDTHS.items():
        await page.set_viewport_size(viewport)
        stem = f"{language}-{name}-{width}{suffix}"
        await page.screenshot(path=SCREENSHOTS / f"{stem}.png", full_page=True)
        if scheme == "light" and name in DOCUMENTED:
            await page.screenshot(path=DOCS_SCREENSHOTS / f"{name}-{language}-{width}.png")
        if width == "phone" and (overflow := await sideways(page)):
            findings.overflows.append(f"{name} ({language}, {scheme}): {overflow}")
    await page.set_viewport_size(DESKTOP)


async def two_factor_pages(page: Page, server: LiveServer, findings: Findings) -> None:
    """Turn TOTP on (the enrolment, the recovery codes, the page when on), then the login step."""
    t = findings.language.t
    await page.goto(server.url + "/account/two-factor/")
    await page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    await page.get_by_role("button", name=t("Set up an authenticator app")).click()
    await expect(page.locator("img.qr")).to_be_visible()
    await examine(page, findings, "two-factor-enrol")
    totp = pyotp.TOTP(await page.locator("code.secret").inner_text())
    await page.get_by_label(t("Code"), exact=True).fill(totp.now())
    await page.get_by_role("button", name=t("Turn on")).click()
    await expect(page.locator("ul.codes li")).to_have_count(10)
    await examine(page, findings, "recovery-codes")
    await page.goto(server.url + "/account/two-factor/")
    await examine(page, findings, "two-factor-on")
    await page.locator("header").get_by_role("button", name=t("Log out"), exact=True).click()
    await page.get_by_label(t("Username"), exact=True).fill(USERNAMES[findings.language.code])
    await page.get_by_label(t("Password"), exact=True).fill(PASSWORD)
    await page.locator("main").get_by_role("button", name=t("Log in"), exact=True).click()
    await expect(page).to_have_url(server.url + "/login/two-factor/")
    await examine(page, findings, "second-step")
    await page.get_by_label(t("Code"), exact=True).fill("000000")
    await page.get_by_role("button", name=t("Verify")).click()
    await expect(page.locator("#code-error")).to_be_visible()
    await examine(page, findings, "second-step-errors")


@pytest.fixture(name="axe")
def axe_fixture() -> Path:
    """axe-core's script, installed from the npm registry by `npm ci --prefix tests`."""
    require(AXE.exists(), f"axe-core is not installed at {AXE}: run `npm ci --prefix tests`")
    return AXE


@pytest.mark.parametrize(
    ("language", "scheme"),
    [(ENGLISH, "light"), (CHINESE, "light"), (ENGLISH, "dark"), (CHINESE, "dark")],
    ids=["en", "zh", "en-dark", "zh-dark"],
)
async def test_every_page_has_no_serious_violations(
    axe: Path, browser: Browser, server: LiveServer, language: Language, scheme: ColorScheme
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    t = language.t
    username = USERNAMES[language.code]
    findings = Findings(axe, language, scheme)
    # The CSP forbids inline script, and Playwright injects axe-core as one.
    context, page = await open_page(browser, language, color_scheme=scheme, bypass_csp=True)

    await page.goto(server.url + "/login/")
    await examine(page, findings, "login")
    await page.goto(server.url + "/register/")
    await examine(page, findings, "register")
    await fill_register_form(page, language, username, COMMON_PASSWORD)
    await expect(page.locator("#password-error")).to_be_visible()
    await examine(page, findings, "register-errors")
    await page.goto(server.url + "/nope")
    await examine(page, findings, "not-found")
    await page.goto(server.url + "/forgot-password/")
    await examine(page, findings, "forgot-password")
    await page.get_by_label(t("Username or email"), exact=True).fill("nobody")
    await page.locator("main").get_by_role("button", name=t("Send the link")).click()
    await expect(page.locator("main .notice")).to_be_visible()
    await examine(page, findings, "forgot-password-sent")
    await page.goto(server.url + "/reset-password/not-a-valid-token-at-all")
    await examine(page, findings, "reset-link-invalid")

    await register(page, server, language, username)
    await examine(page, findings, "index-welcome")
    await page.goto(server.url + "/index/")
    await examine(page, findings, "index")
    for name, path in [
        ("logout", "/logout/"),
        ("account", "/account/"),
        ("password", "/account/password/"),
        ("confirm", "/account/confirm/"),
        ("two-factor-off", "/account/two-factor/"),
        ("passkeys", "/account/passkeys/"),
        ("email", "/account/email/"),
    ]:
        await page.goto(server.url + path)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await examine(page, findings, name)

    await page.locator("header").get_by_role("button", name=t("Log out"), exact=True).click()
    await expect(page.get_by_role("status")).to_be_visible()
    await examine(page, findings, "login-logged-out")
    await page.get_by_label(t("Username"), exact=True).fill(username)
    await page.get_by_label(t("Password"), exact=True).fill(COMMON_PASSWORD)
    await page.locator("main").get_by_role("button", name=t("Log in"), exact=True).click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await examine(page, findings, "login-errors")
    await log_in(page, server, language, username)
    await two_factor_pages(page, server, findings)
    await context.close()

    for report in findings.minor:
        print(report)  # moderate and minor: worth reading, not failing for
    problems = []
    if findings.violations:
        problems += ["axe-core found serious or critical violations:", *findings.violations]
    if findings.overflows:
        problems += ["wider than a 360 px phone:", *findings.overflows]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("language", "username"),
    [(ENGLISH, "Hubert.Wolfeschlegelsteinhausenb"), (CHINESE, "欧阳" * 16)],
    ids=["en", "zh"],
)
async def test_the_longest_username_fits_a_phone(
    browser: Browser, server: LiveServer, language: Language, username: str
) -> None:
    assert len(username) == 32  # the longest a username may be
    SCREENSHOTS.mkdir(exist_ok=True)
    context, page = await open_page(browser, language, viewport=PHONE)
    await register(page, server, language, username)
    for name, path in [("index", "/index/"), ("account", "/account/")]:
        await page.goto(server.url + path)
        await page.screenshot(path=SCREENSHOTS / f"{language}-{name}-phone-long-name.png")
        assert not await sideways(page), f"{path} with a 32-character name"
    await context.close()
