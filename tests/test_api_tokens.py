"""The JSON API's tokens: create, list, revoke, and what a token may open."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.api import TokenCreatedOut, TokenList, TokenOut
from quart_app.models import ApiToken, User

from .api_helpers import (
    assert_no_secrets,
    bearer,
    body_of,
    error_of,
    me_status,
    new_token,
    send,
    signed_in,
)
from .conftest import PASSWORD, auth_cookie

# /api/tokens -------------------------------------------------------------------------------


async def test_create_token_shows_the_secret_once_and_stores_its_hash(client: Client) -> None:
    await signed_in(client)
    response = await client.post("/api/tokens", json={"name": "laptop", "password": PASSWORD})
    assert response.status_code == 201
    created = await body_of(response, TokenCreatedOut)
    assert set((await response.get_json()).keys()) == set(TokenCreatedOut.model_fields)
    assert created.name == "laptop"
    assert created.last_used_at is None
    assert created.token.startswith("qat_")
    assert len(created.token) >= 40
    await assert_no_secrets(response)

    rows = await ApiToken.all().values()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(created.token.encode()).hexdigest()
    for value in rows[0].values():
        assert created.token not in str(value)
        assert created.token.removeprefix("qat_") not in str(value)

    listing = await client.get("/api/tokens")
    tokens = await body_of(listing, TokenList)
    assert [t.id for t in tokens.tokens] == [created.id]
    assert set((await listing.get_json())["tokens"][0]) == set(TokenOut.model_fields)
    await assert_no_secrets(listing, created.token, rows[0]["token_hash"])


async def test_create_token_wrong_password_is_403(client: Client) -> None:
    await signed_in(client)
    response = await client.post("/api/tokens", json={"name": "x", "password": PASSWORD + "!"})
    await error_of(response, 403, "wrong_password")
    assert await ApiToken.all().count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/tokens"), ("GET", "/api/tokens"), ("DELETE", "/api/tokens/1")],
)
async def test_tokens_anonymous_is_401(client: Client, method: str, path: str) -> None:
    body: dict[str, Any] = {"json": {"name": "x", "password": PASSWORD}} if method == "POST" else {}
    response = await send(client, method, path, **body)
    await error_of(response, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "password": PASSWORD}, "name"),
        ({"name": "x" * 65, "password": PASSWORD}, "name"),
        ({"name": 5, "password": PASSWORD}, "name"),
        ({"password": PASSWORD}, "name"),
        ({"name": "x"}, "password"),
        ({"name": "x", "password": None}, "password"),
    ],
)
async def test_create_token_invalid_body_is_422(
    client: Client, body: dict[str, Any], field: str
) -> None:
    await signed_in(client)
    error = await error_of(await client.post("/api/tokens", json=body), 422, "validation_error")
    assert error.details is not None
    assert field in [d.field for d in error.details]
    assert await ApiToken.all().count() == 0


@pytest.mark.parametrize("name", ["a\x00b", "\x00"])
async def test_create_token_with_nul_in_the_name_is_refused(client: Client, name: str) -> None:
    await signed_in(client)
    response = await client.post("/api/tokens", json={"name": name, "password": PASSWORD})
    await error_of(response, 400, "invalid_field")
    assert await ApiToken.all().count() == 0


async def test_token_works_on_the_token_routes(app: Quart, client: Client) -> None:
    await signed_in(client)
    first = await new_token(client, "first")
    program = app.test_client()
    # A token can make another (the password is asked again), list and revoke them.
    second = await new_token(program, "second", **bearer(first.token))
    listing = await body_of(
        await program.get("/api/tokens", headers=bearer(first.token)), TokenList
    )
    assert [t.name for t in listing.tokens] == ["first", "second"]
    assert listing.tokens[0].last_used_at is not None
    response = await program.delete(f"/api/tokens/{second.id}", headers=bearer(first.token))
    assert response.status_code == 204
    assert auth_cookie(program) is None  # a bearer request never gets a session cookie


async def test_revoked_token_is_401(app: Quart, client: Client) -> None:
    await signed_in(client)
    token = await new_token(client)
    assert await me_status(app, bearer(token.token)) == 200
    response = await client.delete(f"/api/tokens/{token.id}")
    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await ApiToken.all().count() == 0
    assert await me_status(app, bearer(token.token)) == 401
    assert (await body_of(await client.get("/api/tokens"), TokenList)).tokens == []


async def test_token_of_another_user_cannot_be_revoked(app: Quart, client: Client) -> None:
    await signed_in(client)
    alices = await new_token(client)
    bob = app.test_client()
    await signed_in(bob, "bob")
    await error_of(await bob.delete(f"/api/tokens/{alices.id}"), 404)
    listing = await body_of(await bob.get("/api/tokens"), TokenList)
    assert listing.tokens == []
    assert await me_status(app, bearer(alices.token)) == 200


@pytest.mark.parametrize("token_id", [0, 42, 2**31 - 1, 2**31, 2**63, 10**30])
async def test_revoking_an_unknown_token_is_404(client: Client, token_id: int) -> None:
    await signed_in(client)
    await new_token(client)
    await error_of(await client.delete(f"/api/tokens/{token_id}"), 404)
    assert await ApiToken.all().count() == 1


@pytest.mark.parametrize("path", ["/api/tokens/-1", "/api/tokens/abc", "/api/tokens/1.5"])
async def test_revoking_a_malformed_id_is_404(client: Client, path: str) -> None:
    await signed_in(client)
    await error_of(await client.delete(path), 404)


@pytest.mark.parametrize("how", ["deleted", "disabled"])
async def test_token_of_a_deleted_or_disabled_user_is_401(
    app: Quart, client: Client, how: str
) -> None:
    out = await signed_in(client)
    token = await new_token(client)
    if how == "deleted":
        await User.filter(id=out.id).delete()
    else:
        await User.filter(id=out.id).update(is_active=False)
    assert await me_status(app, bearer(token.token)) == 401
    response = await app.test_client().get("/api/tokens", headers=bearer(token.token))
    await error_of(response, 401)


async def test_token_is_not_a_login_for_the_pages(app: Quart, client: Client) -> None:
    await signed_in(client)
    token = await new_token(client)
    response = await app.test_client().get("/index/", headers=bearer(token.token))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/")
