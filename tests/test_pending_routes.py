"""A login that passed the password but not the second factor reaches nothing but that step.

Every route of the app's URL map, with every method, is asked by a browser holding a live
pending login and by a stranger with no cookie at all: the answers must be the same. A route
added later is in the map, so it is checked without anyone remembering to.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from quart import Quart
from quart.testing import WebsocketResponseError
from quart.typing import TestClientProtocol as Client
from werkzeug.routing import Rule

from quart_app.models import PendingLogin

from .conftest import PASSWORD, AuthActions, csrf_token
from .test_two_factor import code_at, enable_totp, second_step, settled_step

# The routes of the second step itself: the only ones a pending login may reach.
SECOND_STEP = {
    "security.second_step",
    "api.login_second_step",
    "api.login_second_step_passkey_options",
    "api.login_second_step_passkey",
}
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
ARGUMENTS = {"int": "1", "default": "en", "path": "style.css"}
# <name>, <converter:name> or <converter(options):name> in a rule.
ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")


def paths(rule: Rule) -> str:
    """A path of rule, with a plausible value for each of its arguments."""

    def value(match: re.Match[str]) -> str:
        return ARGUMENTS.get(match.group(1) or "default", ARGUMENTS["default"])

    return ARGUMENT.sub(value, rule.rule)


async def ask(client: Client, method: str, path: str, token: str) -> tuple[Any, ...]:
    """What client gets for method on path, with a real form or JSON body that would act."""
    if path.startswith("/api/"):
        body: dict[str, Any] = {"password": PASSWORD, "code": "000000", "name": "n"}
        body["credential"] = {}
        response = await client.open(path, method=method, json=body)
    elif method == "GET":
        response = await client.get(path)
    else:
        form = {"csrf_token": token, "off-csrf_token": token, "password": PASSWORD}
        form.update({"off-password": PASSWORD, "code": "000000", "name": "n"})
        response = await getattr(client, method.lower())(path, form=form)
    error = None
    if response.mimetype == "application/json":
        data = await response.get_json()
        error = data.get("error") if isinstance(data, dict) else None
    return response.status_code, response.headers.get("Location"), error


@pytest.fixture
async def pending_and_stranger(app: Quart) -> tuple[AuthActions, Client, str]:
    """alice (TOTP on) past her password in one browser; a stranger's browser; her secret."""
    auth = AuthActions(app.test_client())
    await auth.register()
    secret, _ = await enable_totp(auth)
    await auth.logout()
    response = await auth.login()
    assert response.headers["Location"] == "/login/two-factor/"
    return auth, app.test_client(), secret


async def test_no_route_treats_a_pending_login_as_logged_in(
    app: Quart, pending_and_stranger: tuple[AuthActions, Client, str]
) -> None:
    auth, stranger, secret = pending_and_stranger
    step = settled_step()
    tokens = {}
    for name, client in (("pending", auth.client), ("stranger", stranger)):
        tokens[name] = csrf_token(await (await client.get("/register/")).get_data(as_text=True))
    checked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.websocket or rule.endpoint in SECOND_STEP:
            continue
        path = paths(rule)
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
            pending = await ask(auth.client, method, path, tokens["pending"])
            anonymous = await ask(stranger, method, path, tokens["stranger"])
            assert pending == anonymous, f"{method} {path} ({rule.endpoint})"
            checked.append(rule.endpoint)
    # The walk covered the protected pages and API routes, old and new.
    assert {"views.index", "account.index", "security.index", "api.me"} <= set(checked)
    assert {"api.two_factor_start", "api.add_passkey", "security.disable"} <= set(checked)
    # And the pending login was alive all along: it still finishes now.
    assert await PendingLogin.exists()
    assert (await auth.client.get("/login/two-factor/")).status_code == 200
    assert (await second_step(auth.client, code_at(secret, step)))[0] == 303
    assert (await auth.client.get("/api/me")).status_code == 200


async def test_the_live_socket_refuses_a_pending_login(
    pending_and_stranger: tuple[AuthActions, Client, str],
) -> None:
    auth, _, _ = pending_and_stranger
    with pytest.raises(WebsocketResponseError) as refused:
        async with auth.client.websocket("/ws/session") as socket:
            await socket.receive()
    assert refused.value.response.status_code == 401


async def test_pending_visitor_is_anonymous_in_pages(
    pending_and_stranger: tuple[AuthActions, Client, str],
) -> None:
    auth, _, _ = pending_and_stranger
    body = await (await auth.client.get("/login/")).get_data(as_text=True)
    assert "alice" not in body
    assert 'class="who"' not in body
