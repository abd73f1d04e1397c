"""Helpers of the API tests (tests/test_api_*.py): JSON bodies, errors, tokens, clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client

from quart_app.api import ErrorOut, TokenCreatedOut
from quart_app.models import ApiToken, AuthSession, User
from quart_app.testing import log_in, make_user

from .conftest import PASSWORD

M = TypeVar("M", bound=BaseModel)

COOKIE = "quart_app_auth"
SAME_ORIGIN = "http://localhost"  # the test client's scheme and host
FOREIGN_ORIGIN = "https://evil.example"
ALICE = {"username": "alice", "password": PASSWORD}
MiB = 1024 * 1024


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


async def signed_in(client: Client, username: str = "alice") -> User:
    """username made and client logged in, where registering is setup, not the subject."""
    user = await make_user(client.app, username)
    await log_in(client, user)
    return user


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


JSON_ROUTES = ["/api/register", "/api/login", "/api/tokens"]
UNSAFE_ROUTES = [*JSON_ROUTES, "/api/logout"]
NEEDS_LOGIN = {"/api/tokens", "/api/logout"}


async def logged_in_for(path: str, client: Client) -> None:
    """Log bob in when path needs a login, so that the body is what gets judged."""
    if path in NEEDS_LOGIN:
        await signed_in(client, "bob")


async def nothing_but_bob(path: str) -> None:
    """Nothing was created by the refused request, and bob's session (if any) survived it."""
    assert await User.exclude(username="bob").count() == 0
    assert await ApiToken.all().count() == 0
    assert await AuthSession.all().count() == (1 if path in NEEDS_LOGIN else 0)


async def assert_throttled(response: Response) -> None:
    await error_of(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0
