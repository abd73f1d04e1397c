"""The tutorial's whole flow through the real forms."""

from __future__ import annotations

from quart.typing import TestClientProtocol as Client

from .conftest import PASSWORD, AuthActions, auth_cookie


async def test_register_index_logout_login(client: Client, auth: AuthActions) -> None:
    response = await auth.register("Alice")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/index/"

    page = await client.get("/index/")
    assert page.status_code == 200
    assert "Alice" in await page.get_data(as_text=True)

    response = await auth.logout()
    assert response.headers["Location"] == "/login/"
    assert (await client.get("/index/")).status_code == 302
    login_page = await (await client.get("/login/")).get_data(as_text=True)
    assert "You have been logged out." in login_page

    response = await auth.login("alice", PASSWORD)
    assert response.headers["Location"] == "/index/"
    assert auth_cookie(client) is not None
    page = await client.get("/index/")
    assert "Alice" in await page.get_data(as_text=True)
