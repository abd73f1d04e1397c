"""The JSON API's rate limits: failures per account, registrations per address."""

from __future__ import annotations

from quart_app.models import ApiToken, User

from .api_helpers import (
    ALICE,
    assert_throttled,
    error_of,
    register,
)
from .conftest import PASSWORD, AppFactory, auth_cookie

# Throttling --------------------------------------------------------------------------------


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
