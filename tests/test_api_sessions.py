"""The JSON API's sessions: freshness for destructive calls, one login shared with the pages."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.api import MeOut
from quart_app.models import ApiToken, AuthSession

from .api_helpers import (
    body_of,
    error_of,
    new_token,
    signed_in,
)
from .conftest import PASSWORD, AuthActions, forget_copies


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/tokens", {"name": "x", "password": PASSWORD}),
        ("DELETE", "/api/tokens/{token}", None),
        ("DELETE", "/api/sessions/{session}", None),
        ("POST", "/api/sessions/revoke-others", None),
    ],
    ids=["create-token", "revoke-token", "end-session", "revoke-others"],
)
async def test_a_stale_session_may_do_nothing_destructive(
    app: Quart, client: Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Every destructive call asks for the same freshness; nothing changes without it."""
    await signed_in(client)
    token = await new_token(client)
    session = await AuthSession.all().first()
    assert session is not None
    await AuthSession.all().update(fresh=False)
    forget_copies(app)
    url = path.format(token=token.id, session=session.id)

    response = await client.open(url, method=method, json=body)

    await error_of(response, 403, "reauthentication_required")
    assert await ApiToken.all().count() == 1
    assert await AuthSession.all().count() == 1


# The pages and the API share one login ----------------------------------------------------


async def test_html_login_is_an_api_session(client: Client, auth: AuthActions) -> None:
    await auth.register("alice")
    response = await client.get("/api/me")
    me = await body_of(response, MeOut)
    assert (me.username, me.authenticated_by) == ("alice", "session")


async def test_api_login_is_a_page_session(client: Client) -> None:
    await signed_in(client)
    page = await client.get("/index/")
    assert page.status_code == 200
    assert "alice" in await page.get_data(as_text=True)
    assert (await client.post("/api/logout")).status_code == 204
    assert (await client.get("/index/")).status_code == 302


async def test_html_logout_ends_the_api_session(client: Client, auth: AuthActions) -> None:
    await signed_in(client)
    await auth.logout()
    await error_of(await client.get("/api/me"), 401)
