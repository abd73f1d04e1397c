"""The JSON API: every route's success and failure, cookies and tokens, bad input, the document."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client

from quart_app.api import ErrorOut, MeOut, TokenCreatedOut, TokenList, TokenOut, UserOut
from quart_app.models import ApiToken, AuthSession, User

from .conftest import PASSWORD, AppFactory, AuthActions, auth_cookie, forget_copies

M = TypeVar("M", bound=BaseModel)

COOKIE = "quart_app_auth"
SAME_ORIGIN = "http://localhost"  # the test client's scheme and host
FOREIGN_ORIGIN = "https://evil.example"
ALICE = {"username": "alice", "password": PASSWORD}
MiB = 1024 * 1024


# Helpers -----------------------------------------------------------------------------------


async def body_of(response: Response, model: type[M]) -> M:
    """The response's JSON as model, which must name every key it carries."""
    assert response.mimetype == "application/json"
    data = await response.get_json()
    assert isinstance(data, dict)
    assert set(data) <= set(model.model_fields), (
        f"undeclared keys: {set(data) - set(model.model_fields)}"
    )
    return model.model_validate(data)


async def error_of(response: Response, status: int, code: str | None = None) -> ErrorOut:
    """The JSON error body of response, which must have this status (and code)."""
    assert response.status_code == status, await response.get_data(as_text=True)
    error = await body_of(response, ErrorOut)
    if code is not None:
        assert error.error == code
    assert error.message
    return error


async def assert_no_secrets(response: Response, *secrets: str) -> None:
    text = await response.get_data(as_text=True)
    assert "password" not in text.lower()
    assert "$argon2" not in text
    assert PASSWORD not in text
    for secret in secrets:
        assert secret not in text


async def send(client: Client, method: str, path: str, **kwargs: Any) -> Response:
    """client.get, .post, ... by name: the protocol's open() demands a json argument."""
    request: Callable[..., Awaitable[Response]] = getattr(client, method.lower())
    return await request(path, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: Client, username: str = "alice", **headers: str) -> Response:
    return await client.post(
        "/api/register", json={"username": username, "password": PASSWORD}, headers=headers
    )


async def new_token(client: Client, name: str = "ci", **headers: str) -> TokenCreatedOut:
    """Create a token with the logged-in client (or the bearer token in headers)."""
    response = await client.post(
        "/api/tokens", json={"name": name, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await body_of(response, TokenCreatedOut)


async def me_status(app: Quart, headers: dict[str, str]) -> int:
    """GET /api/me from a fresh client: no cookie jar, only these headers."""
    return (await app.test_client().get("/api/me", headers=headers)).status_code


async def nothing_stored() -> None:
    assert await User.all().count() == 0
    assert await AuthSession.all().count() == 0
    assert await ApiToken.all().count() == 0


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
    assert response.status_code in (200, 201)
    out = await body_of(response, UserOut)
    assert out.id != 999
    assert "is_admin" not in await response.get_json()
    assert await User.filter(id=999).count() == 0
    assert not hasattr(await User.get(username="alice"), "is_admin")


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


# /api/tokens -------------------------------------------------------------------------------


async def test_create_token_shows_the_secret_once_and_stores_its_hash(client: Client) -> None:
    await register(client)
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
    await register(client)
    response = await client.post("/api/tokens", json={"name": "x", "password": PASSWORD + "!"})
    await error_of(response, 403, "wrong_password")
    assert await ApiToken.all().count() == 0


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
    await register(client)
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
    await register(client)
    error = await error_of(await client.post("/api/tokens", json=body), 422, "validation_error")
    assert error.details is not None
    assert field in [d.field for d in error.details]
    assert await ApiToken.all().count() == 0


@pytest.mark.parametrize("name", ["a\x00b", "\x00"])
async def test_create_token_with_nul_in_the_name_is_refused(client: Client, name: str) -> None:
    await register(client)
    response = await client.post("/api/tokens", json={"name": name, "password": PASSWORD})
    await error_of(response, 400, "invalid_field")
    assert await ApiToken.all().count() == 0


async def test_token_works_on_the_token_routes(app: Quart, client: Client) -> None:
    await register(client)
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
    await register(client)
    token = await new_token(client)
    assert await me_status(app, bearer(token.token)) == 200
    response = await client.delete(f"/api/tokens/{token.id}")
    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await ApiToken.all().count() == 0
    assert await me_status(app, bearer(token.token)) == 401
    assert (await body_of(await client.get("/api/tokens"), TokenList)).tokens == []


async def test_token_of_another_user_cannot_be_revoked(app: Quart, client: Client) -> None:
    await register(client)
    alices = await new_token(client)
    bob = app.test_client()
    await register(bob, "bob")
    await error_of(await bob.delete(f"/api/tokens/{alices.id}"), 404)
    listing = await body_of(await bob.get("/api/tokens"), TokenList)
    assert listing.tokens == []
    assert await me_status(app, bearer(alices.token)) == 200


@pytest.mark.parametrize("token_id", [0, 42, 2**31 - 1, 2**31, 2**63, 10**30])
async def test_revoking_an_unknown_token_is_404(client: Client, token_id: int) -> None:
    await register(client)
    await new_token(client)
    await error_of(await client.delete(f"/api/tokens/{token_id}"), 404)
    assert await ApiToken.all().count() == 1


@pytest.mark.parametrize("path", ["/api/tokens/-1", "/api/tokens/abc", "/api/tokens/1.5"])
async def test_revoking_a_malformed_id_is_404(client: Client, path: str) -> None:
    await register(client)
    await error_of(await client.delete(path), 404)


@pytest.mark.parametrize("how", ["deleted", "disabled"])
async def test_token_of_a_deleted_or_disabled_user_is_401(
    app: Quart, client: Client, how: str
) -> None:
    out = await body_of(await register(client), UserOut)
    token = await new_token(client)
    if how == "deleted":
        await User.filter(id=out.id).delete()
    else:
        await User.filter(id=out.id).update(is_active=False)
    assert await me_status(app, bearer(token.token)) == 401
    response = await app.test_client().get("/api/tokens", headers=bearer(token.token))
    await error_of(response, 401)


async def test_token_is_not_a_login_for_the_pages(app: Quart, client: Client) -> None:
    await register(client)
    token = await new_token(client)
    response = await app.test_client().get("/index/", headers=bearer(token.token))
    assert response.status_code in (302, 303)
    assert response.headers["Location"].startswith("/login/")


# Malformed and hostile input ---------------------------------------------------------------


JSON_ROUTES = ["/api/register", "/api/login", "/api/tokens"]
UNSAFE_ROUTES = [*JSON_ROUTES, "/api/logout"]
NEEDS_LOGIN = {"/api/tokens", "/api/logout"}


async def logged_in_for(path: str, client: Client) -> None:
    """Log bob in when path needs a login, so that the body is what gets judged."""
    if path in NEEDS_LOGIN:
        await register(client, "bob")


async def nothing_but_bob(path: str) -> None:
    """Nothing was created by the refused request, and bob's session (if any) survived it."""
    assert await User.exclude(username="bob").count() == 0
    assert await ApiToken.all().count() == 0
    assert await AuthSession.all().count() == (1 if path in NEEDS_LOGIN else 0)


@pytest.mark.parametrize("path", UNSAFE_ROUTES)
@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b'{"username": "alice", "password": "x",}',
        b"{'username': 'alice'}",
        b'{"username": "alice" "password": "x"}',
        b"\xff\xfe{}",
        b'{"username": "al\xffice", "password": "correct horse battery staple", "name": "\xc3"}',
        b'{"username": "alice", "password": "' + "ü".encode("latin-1") + b'xxxxxxxxx"}',
        '{"username": "alice"}'.encode("utf-16"),
        b'{"username": ' + b"9" * 5000 + b"}",
    ],
    ids=[
        "truncated",
        "trailing-comma",
        "single-quotes",
        "missing-comma",
        "bom-garbage",
        "invalid-utf8",
        "latin-1",
        "utf-16",
        "huge-number",
    ],
)
async def test_malformed_json_is_400(client: Client, path: str, data: bytes) -> None:
    await logged_in_for(path, client)
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    await error_of(response, 400, "invalid_json")
    await nothing_but_bob(path)


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "data",
    [b"[]", b'"x"', b"null", b"5", b"true", b"[" * 50_000 + b"]" * 50_000],
    ids=["array", "string", "null", "number", "bool", "deeply-nested"],
)
async def test_json_that_is_not_an_object_is_refused(
    client: Client, path: str, data: bytes
) -> None:
    await logged_in_for(path, client)
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    if data.startswith(b"[["):
        await error_of(response, 400, "invalid_json")  # too deep to parse
    else:
        error = await error_of(response, 422, "validation_error")
        assert [d.field for d in error.details or []] == ["body"]
    await nothing_but_bob(path)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/register", {"username": 5, "password": PASSWORD}, "username"),
        ("/api/register", {"username": "alice", "password": 12345678}, "password"),
        ("/api/register", {"username": None, "password": PASSWORD}, "username"),
        ("/api/register", {"username": ["alice"], "password": PASSWORD}, "username"),
        ("/api/register", {"username": {"$ne": ""}, "password": PASSWORD}, "username"),
        ("/api/login", {"username": 5, "password": PASSWORD}, "username"),
        ("/api/login", {"username": "alice", "password": True}, "password"),
        ("/api/login", {"username": "alice", "password": PASSWORD, "remember": "yes"}, "remember"),
        ("/api/login", {"username": "alice", "password": PASSWORD, "remember": 1}, "remember"),
        ("/api/login", {"username": "alice", "password": PASSWORD, "remember": None}, "remember"),
        ("/api/tokens", {"name": ["x"], "password": PASSWORD}, "name"),
        ("/api/tokens", {"name": "x", "password": 5}, "password"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(
    app: Quart, client: Client, path: str, body: dict[str, Any], field: str
) -> None:
    await register(client)  # alice exists, so a coerced login would succeed
    sender = client if path == "/api/tokens" else app.test_client()
    error = await error_of(await sender.post(path, json=body), 422, "validation_error")
    assert error.details is not None
    assert field in [d.field for d in error.details]
    assert await User.all().count() == 1
    assert await AuthSession.all().count() == 1
    assert await ApiToken.all().count() == 0


@pytest.mark.parametrize(
    ("path", "body", "missing"),
    [
        ("/api/register", {}, {"username", "password"}),
        ("/api/register", {"username": "alice"}, {"password"}),
        ("/api/register", {"password": PASSWORD}, {"username"}),
        ("/api/login", {}, {"username", "password"}),
        ("/api/login", {"username": "alice"}, {"password"}),
        ("/api/login", {"password": PASSWORD, "remember": True}, {"username"}),
    ],
)
async def test_missing_fields_are_422_naming_each(
    client: Client, path: str, body: dict[str, Any], missing: set[str]
) -> None:
    error = await error_of(await client.post(path, json=body), 422, "validation_error")
    assert error.details is not None
    assert {d.field for d in error.details} == missing
    await nothing_stored()


@pytest.mark.parametrize("path", ["/api/register", "/api/login"])
async def test_empty_json_content_is_refused(client: Client, path: str) -> None:
    response = await client.post(path, headers={"Content-Type": "application/json"})
    await error_of(response, 400, "bad_request")
    await nothing_stored()


@pytest.mark.parametrize("path", UNSAFE_ROUTES)
async def test_bodies_over_one_mib_are_413(client: Client, path: str) -> None:
    await logged_in_for(path, client)
    padding = "x" * (2 * MiB)
    response = await client.post(path, json={**ALICE, "name": "x", "padding": padding})
    await error_of(response, 413)
    await nothing_but_bob(path)


@pytest.mark.parametrize(
    ("field", "size"), [("username", 100_000), ("password", 100_000), ("username", 4097)]
)
async def test_huge_fields_are_422(client: Client, field: str, size: int) -> None:
    body = {**ALICE, field: "a" * size}
    error = await error_of(await client.post("/api/register", json=body), 422, "validation_error")
    assert error.details is not None
    assert [d.field for d in error.details] == [field]
    await nothing_stored()


@pytest.mark.parametrize("path", ["/api/register", "/api/login"])
@pytest.mark.parametrize(
    "body",
    [
        {"username": "ali\x00ce", "password": PASSWORD},
        {"username": "\x00", "password": PASSWORD},
        {"username": "alice", "password": PASSWORD + "\x00"},
        {"username": "alice", "password": "\x00" * 12},
    ],
    ids=["nul-in-username", "nul-username", "nul-in-password", "nul-password"],
)
async def test_nul_bytes_are_refused_and_nothing_stored(
    client: Client, path: str, body: dict[str, str]
) -> None:
    response = await client.post(path, json=body)
    error = await error_of(response, 400, "invalid_field")
    assert error.details
    assert auth_cookie(client) is None
    await nothing_stored()


async def test_login_with_nul_is_400_and_never_matches(app: Quart, client: Client) -> None:
    await register(client)
    other = app.test_client()
    body = {"username": "alice\x00", "password": PASSWORD + "\x00"}
    await error_of(await other.post("/api/login", json=body), 400, "invalid_field")
    assert auth_cookie(other) is None


@pytest.mark.parametrize("path", UNSAFE_ROUTES)
@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", b"username=alice&password=correct+horse&name=x"),
        ("text/plain", b'{"username": "alice", "password": "correct horse battery staple"}'),
        ("text/plain;charset=UTF-8", b'{"name": "x", "password": "correct horse battery staple"}'),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="x"'),
        ("application/jsonx", b"{}"),
        (None, b'{"username": "alice", "password": "correct horse battery staple"}'),
    ],
    ids=["form", "text-plain", "text-plain-charset", "multipart", "not-json", "no-content-type"],
)
async def test_non_json_bodies_are_415(
    client: Client, path: str, content_type: str | None, data: bytes
) -> None:
    await logged_in_for(path, client)
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(path, data=data, headers=headers)
    await error_of(response, 415)
    await nothing_but_bob(path)


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
    await register(client)
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
    await register(client)
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
    await register(client)
    headers = {
        "Origin": FOREIGN_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    body: dict[str, Any] = {"json": ALICE} if method == "POST" else {}
    response = await send(client, method, path, headers=headers, **body)
    assert response.status_code < 500
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


# Other methods and paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/register"), ("GET", "/api/login"), ("GET", "/api/logout"), ("PUT", "/api/me")],
)
async def test_wrong_method_is_405_json(client: Client, method: str, path: str) -> None:
    response = await send(client, method, path)
    await error_of(response, 405)
    assert "Allow" in response.headers


async def test_unknown_api_path_is_404_json(client: Client) -> None:
    await error_of(await client.get("/api/nothing-here"), 404, "not_found")


async def test_api_responses_carry_the_security_headers(client: Client) -> None:
    response = await register(client)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Server" not in response.headers


# Throttling --------------------------------------------------------------------------------


async def assert_throttled(response: Response) -> None:
    await error_of(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0


async def test_login_failures_are_throttled_per_account(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMITER_ENABLED=True, LOGIN_FAILURES_PER_ACCOUNT="2/15 minutes")
    client = app.test_client()
    await register(client)
    other = app.test_client()
    wrong = {"username": "alice", "password": "wrong password"}
    for _ in range(2):
        await error_of(await other.post("/api/login", json=wrong), 401)
    await assert_throttled(await other.post("/api/login", json=ALICE))  # even the right one
    await assert_throttled(await other.post("/api/login", json={**ALICE, "username": "ALICE"}))
    assert auth_cookie(other) is None
    # Another account is not affected.
    await register(app.test_client(), "bob")
    bob = await app.test_client().post("/api/login", json={**ALICE, "username": "bob"})
    assert bob.status_code == 200


async def test_unknown_names_are_throttled_alike(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMITER_ENABLED=True, LOGIN_FAILURES_PER_ACCOUNT="2/15 minutes")
    client = app.test_client()
    body = {"username": "nobody", "password": PASSWORD}
    for _ in range(2):
        await error_of(await client.post("/api/login", json=body), 401)
    await assert_throttled(await client.post("/api/login", json=body))


async def test_token_password_checks_are_throttled(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMITER_ENABLED=True, LOGIN_FAILURES_PER_ACCOUNT="2/15 minutes")
    client = app.test_client()
    await register(client)
    wrong = {"name": "x", "password": "wrong password"}
    for _ in range(2):
        await error_of(await client.post("/api/tokens", json=wrong), 403, "wrong_password")
    await assert_throttled(
        await client.post("/api/tokens", json={"name": "x", "password": PASSWORD})
    )
    assert await ApiToken.all().count() == 0


async def test_registrations_are_throttled_per_address(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMITER_ENABLED=True, REGISTRATIONS_PER_ADDRESS="1/hour")
    assert (await register(app.test_client())).status_code == 201
    await assert_throttled(await register(app.test_client(), "bob"))
    assert await User.all().count() == 1


# The pages and the API share one login ----------------------------------------------------


async def test_html_login_is_an_api_session(client: Client, auth: AuthActions) -> None:
    await auth.register("alice")
    response = await client.get("/api/me")
    me = await body_of(response, MeOut)
    assert (me.username, me.authenticated_by) == ("alice", "session")


async def test_api_login_is_a_page_session(client: Client) -> None:
    await register(client)
    page = await client.get("/index/")
    assert page.status_code == 200
    assert "alice" in await page.get_data(as_text=True)
    assert (await client.post("/api/logout")).status_code == 204
    assert (await client.get("/index/")).status_code in (302, 303)


async def test_html_logout_ends_the_api_session(client: Client, auth: AuthActions) -> None:
    await register(client)
    await auth.logout()
    await error_of(await client.get("/api/me"), 401)


# /openapi.json -----------------------------------------------------------------------------


async def test_openapi_document_is_valid_and_describes_only_the_api(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = await response.get_json()
    validate(document)  # raises on an invalid OpenAPI document
    assert document["openapi"].startswith("3.")
    paths: dict[str, dict[str, Any]] = document["paths"]
    assert paths
    assert all(path.startswith("/api/") for path in paths)
    assert {"/api/register", "/api/login", "/api/logout", "/api/me", "/api/tokens"} <= set(paths)
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {"type": "apiKey", "in": "cookie", "name": COOKIE}
    assert schemes["token"] == {"type": "http", "scheme": "bearer"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            security = operation.get("security")
            if path in ("/api/register", "/api/login"):
                assert not security, f"{method} {path}"
            else:
                assert security == [{"session": []}, {"token": []}], f"{method} {path}"


def resolve(node: Any, components: dict[str, Any]) -> Any:
    """node with every $ref replaced by the component schema it names."""
    if isinstance(node, dict):
        if "$ref" in node:
            return resolve(components[node["$ref"].rsplit("/", 1)[-1]], components)
        return {key: resolve(value, components) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, components) for item in node]
    return node


async def test_openapi_responses_never_describe_a_password(client: Client) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    components = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = resolve(operation["responses"], components)
            assert "password" not in str(responses).lower(), f"{method} {path}"
            for status, answer in responses.items():
                if status.startswith("2") and "content" in answer:
                    schema = answer["content"]["application/json"]["schema"]
                    assert "hash" not in str(schema.get("properties", {})).lower()
