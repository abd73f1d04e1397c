"""A session's device: read from the user agent once, at login; shown in any language."""

from __future__ import annotations

from quart_babel import gettext as _
from ua_parser import parse as parse_user_agent

SEPARATOR = "\t"


def describe(user_agent: str) -> str:
    """'Firefox 128<TAB>Windows': the browser and system, stored with the session."""
    result = parse_user_agent(user_agent[:512])
    browser = result.user_agent.family if result.user_agent else ""
    if result.user_agent and result.user_agent.major:
        browser += f" {result.user_agent.major}"
    system = result.os.family if result.os else ""
    if result.device and result.device.family != "Other":
        system = result.device.family
    return f"{browser}{SEPARATOR}{system}"


def label(device: str) -> str:
    """'Firefox 128 on Windows', in the request's language, from what describe stored."""
    browser, _sep, system = device.partition(SEPARATOR)
    browser = browser or str(_("Unknown browser"))
    return (
        str(_("%(browser)s on %(system)s", browser=browser, system=system)) if system else browser
    )
