"""The JSON API and other sites: cross-site requests are refused, CORS reflects nothing."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.models import ApiToken

from .api_helpers import (
    ALICE,
    FOREIGN_ORIGIN,
    SAME_ORIGIN,
    bearer,
    error_of,
    new_token,
    nothing_stored,
    register,
    send,
    signed_in,
)
from .conftest import PASSWORD, auth_cookie

# Cross-site requests and CORS --------------------------------------------------------------

CROSS_SITE = [
    {"Origin": FOREIGN_ORIGIN},
    {"Origin": "null"},
    {"Origin": "http://localhost:8080"},
    {"Origin": "https://localhost"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": SAME_ORIGIN},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_cross_site_register_and_login_are_403(
    app: Quart, client: Client, headers: dict[str, str]
) -> None:
    await error_of(await register(client, **headers), 403, "cross_site_request")
    await nothing_stored()
    await register(app.test_client())
    other = app.test_client()
    response = await other.post("/api/login", json=ALICE, headers=headers)
    await error_of(response, 403, "cross_site_request")
    assert auth_cookie(other) is None


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_cross_site_requests_with_a_cookie_are_403(
    client: Client, headers: dict[str, str]
) -> None:
    await signed_in(client)
    token = await new_token(client)
    create = await client.post(
        "/api/tokens", json={"name": "evil", "password": PASSWORD}, headers=headers
    )
    await error_of(create, 403, "cross_site_request")
    revoke = await client.delete(f"/api/tokens/{token.id}", headers=headers)
    await error_of(revoke, 403, "cross_site_request")
    await error_of(await client.post("/api/logout", headers=headers), 403, "cross_site_request")
    assert await ApiToken.all().count() == 1
    assert (await client.get("/api/me")).status_code == 200  # still logged in


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": SAME_ORIGIN},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "same-origin", "Origin": SAME_ORIGIN},
    ],
)
async def test_same_origin_requests_pass(client: Client, headers: dict[str, str]) -> None:
    assert (await register(client, **headers)).status_code == 201
    await new_token(client, **headers)
    assert (await client.post("/api/logout", headers=headers)).status_code == 204
    response = await client.post("/api/login", json=ALICE, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_bearer_requests_skip_the_cross_site_checks(
    app: Quart, client: Client, headers: dict[str, str]
) -> None:
    await signed_in(client)
    token = await new_token(client)
    program = app.test_client()
    auth = {**headers, **bearer(token.token)}
    other = await new_token(program, "other", **auth)
    response = await program.delete(f"/api/tokens/{other.id}", headers=auth)
    assert response.status_code == 204
    assert (await program.post("/api/logout", headers=auth)).status_code == 204
    assert await ApiToken.all().count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("OPTIONS", "/api/login"),
        ("OPTIONS", "/api/me"),
        ("GET", "/api/me"),
        ("POST", "/api/login"),
        ("GET", "/openapi.json"),
    ],
)
async def test_cors_never_reflects_a_foreign_origin(client: Client, method: str, path: str) -> None:
    await signed_in(client)
    headers = {
        "Origin": FOREIGN_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    body: dict[str, Any] = {"json": ALICE} if method == "POST" else {}
    response = await send(client, method, path, headers=headers, **body)
    # Preflights get the allowed methods; only the login refuses the foreign Origin.
    assert response.status_code == (403 if method == "POST" else 200)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
