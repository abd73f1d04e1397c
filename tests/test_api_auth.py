"""The JSON API's accounts: register, log in, log out, who is logged in."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.api import MeOut, UserOut
from quart_app.models import ApiToken, AuthSession, User

from .api_helpers import (
    ALICE,
    COOKIE,
    assert_no_secrets,
    bearer,
    body_of,
    error_of,
    me_status,
    new_token,
    nothing_stored,
    register,
)
from .conftest import PASSWORD, auth_cookie

# POST /api/register ------------------------------------------------------------------------


async def test_register_creates_the_user_and_logs_in(client: Client) -> None:
    response = await register(client, "Zoë_1")
    assert response.status_code == 201
    out = await body_of(response, UserOut)
    assert set((await response.get_json()).keys()) == set(UserOut.model_fields)
    user = await User.get(id=out.id)
    assert out.username == user.username == "Zoë_1"
    assert out.created_at == user.created_at
    assert auth_cookie(client) is not None
    assert await AuthSession.filter(user_id=out.id).count() == 1
    await assert_no_secrets(response, user.password_hash)
    me = await body_of(await client.get("/api/me"), MeOut)
    assert (me.id, me.authenticated_by) == (out.id, "session")


async def test_register_accepts_json_with_a_charset(client: Client) -> None:
    response = await client.post(
        "/api/register",
        data=b'{"username": "alice", "password": "correct horse battery staple"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201
    assert await User.filter(username="alice").count() == 1


@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice"])
async def test_register_taken_username_is_409(app: Quart, client: Client, taken: str) -> None:
    assert (await register(client)).status_code == 201
    await error_of(await register(app.test_client(), taken), 409, "username_taken")
    assert await User.all().count() == 1


@pytest.mark.parametrize(
    ("username", "password", "field", "message"),
    [
        ("a", PASSWORD, "username", "2 to 32 characters"),
        ("x" * 33, PASSWORD, "username", "2 to 32 characters"),
        ("bad name", PASSWORD, "username", "only letters"),
        ("<b>x</b>", PASSWORD, "username", "only letters"),
        ("alice", "short", "password", "8 to 1024"),
        ("alice", "x" * 1025, "password", "8 to 1024"),
        ("alice", "password1", "password", "too common"),
        ("alice", "xxalice-and-more", "password", "must not contain the username"),
    ],
)
async def test_register_rule_violations_are_422_with_details(
    client: Client, username: str, password: str, field: str, message: str
) -> None:
    response = await client.post("/api/register", json={"username": username, "password": password})
    error = await error_of(response, 422, "validation_error")
    assert error.details is not None
    assert [d.field for d in error.details] == [field]
    assert message in error.details[0].message
    await nothing_stored()


@pytest.mark.parametrize("path", ["/api/register", "/api/login"])
async def test_extra_fields_are_ignored(client: Client, path: str) -> None:
    if path == "/api/login":
        await register(client)
        await client.post("/api/logout")
    response = await client.post(path, json={**ALICE, "id": 999, "is_admin": True})
    assert response.status_code == (201 if path == "/api/register" else 200)
    out = await body_of(response, UserOut)
    assert out.id != 999
    assert set(await response.get_json()) == set(UserOut.model_fields)
    assert await User.filter(id=999).count() == 0
    assert [user.id for user in await User.all()] == [out.id]


# POST /api/login ---------------------------------------------------------------------------


async def test_login_sets_the_cookie(app: Quart, client: Client) -> None:
    await register(client)
    other = app.test_client()
    response = await other.post("/api/login", json={"username": "ALICE", "password": PASSWORD})
    assert response.status_code == 200
    out = await body_of(response, UserOut)
    assert out.username == "alice"
    await assert_no_secrets(response, (await User.get(id=out.id)).password_hash)
    assert auth_cookie(other) is not None
    set_cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE))
    assert "max-age" not in set_cookie.lower()  # ends with the browser
    assert "expires" not in set_cookie.lower()
    assert (await other.get("/api/me")).status_code == 200


async def test_login_remember_gives_a_persistent_cookie(app: Quart, client: Client) -> None:
    await register(client)
    response = await app.test_client().post("/api/login", json={**ALICE, "remember": True})
    assert response.status_code == 200
    set_cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE))
    assert f"Max-Age={30 * 24 * 3600}" in set_cookie
    assert await AuthSession.filter(remember=True).count() == 1


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": PASSWORD + "x"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "alice", "password": ""},
    ],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
async def test_login_wrong_is_401_with_one_message(
    app: Quart, client: Client, credentials: dict[str, str]
) -> None:
    await register(client)
    other = app.test_client()
    error = await error_of(await other.post("/api/login", json=credentials), 401)
    assert error.message == "Invalid username or password."
    assert auth_cookie(other) is None
    assert await AuthSession.all().count() == 1  # only the registration's


async def test_login_of_a_disabled_user_is_401(app: Quart, client: Client) -> None:
    await register(client)
    await User.filter(username="alice").update(is_active=False)
    await error_of(await app.test_client().post("/api/login", json=ALICE), 401)


async def test_credentials_in_the_query_string_are_ignored(app: Quart, client: Client) -> None:
    await register(client)
    other = app.test_client()
    response = await other.post("/api/login", query_string=ALICE, json={})
    await error_of(response, 422, "validation_error")
    assert auth_cookie(other) is None


# POST /api/logout --------------------------------------------------------------------------


async def test_logout_ends_the_session_on_the_server(app: Quart) -> None:
    client = app.test_client()
    await register(client)
    await client.post("/api/logout")
    login = await client.post("/api/login", json=ALICE)
    assert login.status_code == 200
    cookie = auth_cookie(client)
    assert cookie is not None
    assert await me_status(app, {"Cookie": f"{COOKIE}={cookie}"}) == 200

    response = await client.post("/api/logout")
    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await AuthSession.all().count() == 0
    await error_of(await client.get("/api/me"), 401)
    # The old cookie, replayed by another client, is refused too.
    assert await me_status(app, {"Cookie": f"{COOKIE}={cookie}"}) == 401


async def test_logout_anonymous_is_401(client: Client) -> None:
    await error_of(await client.post("/api/logout"), 401)


async def test_logout_with_a_token_revokes_only_that_token(app: Quart, client: Client) -> None:
    await register(client)
    first = await new_token(client, "first")
    second = await new_token(client, "second")
    response = await app.test_client().post("/api/logout", headers=bearer(first.token))
    assert response.status_code == 204
    assert await ApiToken.filter(id=first.id).count() == 0
    assert await me_status(app, bearer(first.token)) == 401
    assert await me_status(app, bearer(second.token)) == 200
    assert (await client.get("/api/me")).status_code == 200  # the session is untouched


# GET /api/me -------------------------------------------------------------------------------


async def test_me_anonymous_is_401_json_not_a_redirect(client: Client) -> None:
    response = await client.get("/api/me")
    await error_of(response, 401)
    assert "Location" not in response.headers


async def test_me_with_a_session(client: Client) -> None:
    out = await body_of(await register(client), UserOut)
    response = await client.get("/api/me")
    assert response.status_code == 200
    me = await body_of(response, MeOut)
    assert set((await response.get_json()).keys()) == set(MeOut.model_fields)
    assert (me.id, me.username, me.created_at) == (out.id, out.username, out.created_at)
    assert me.authenticated_by == "session"
    assert response.headers["Cache-Control"] == "no-store"
    await assert_no_secrets(response)


async def test_me_with_a_token(app: Quart, client: Client) -> None:
    out = await body_of(await register(client), UserOut)
    token = await new_token(client)
    response = await app.test_client().get("/api/me", headers=bearer(token.token))
    me = await body_of(response, MeOut)
    assert (me.id, me.authenticated_by) == (out.id, "token")
    await assert_no_secrets(response, token.token)
    row = await ApiToken.get(id=token.id)
    assert row.last_used_at is not None


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer qat_not-a-real-token",
        "Bearer ",
        "Bearer",
        "Basic YWxpY2U6Y29ycmVjdA==",
        "qat_no-scheme",
        "Bearer qat_" + "x" * 200,
    ],
)
async def test_me_with_a_bad_authorization_header_is_401(
    app: Quart, client: Client, authorization: str
) -> None:
    await register(client)
    await new_token(client)
    assert await me_status(app, {"Authorization": authorization}) == 401
