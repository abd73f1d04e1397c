"""Testing an app built on quart_app: a test client logged in as a user, as Flask-Login's.

    app.test_client_class = LoginTestClient
    client = app.test_client(user=user)          # FlaskLoginClient's call
    response = await client.get("/index/")       # logged in

The login is a real server-side session, made by `sessions.start` for the address and user
agent this client presents, at its first request (`app.test_client()` is synchronous): its
cookie is Quart-Auth's, signed by the app, so logout, revocation, `session_protection` and
live logout behave as in production. No form is posted and no password is hashed.
`authenticated_client(client, user)` is the same as a context manager, Quart-Auth's way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from functools import cache
from typing import Any, cast

from argon2 import PasswordHasher as Argon2Hasher
from quart import Quart, Response
from quart.testing import QuartClient
from quart.typing import TestClientProtocol, TestWebsocketConnectionProtocol

from . import accounts, compat, devices, sessions
from .config import DEFAULTS
from .login import FRESH_MARK, fresh_mark
from .models import AuthSession, User
from .passwords import normalize

__all__ = [
    "PASSWORD",
    "LoginTestClient",
    "authenticated_client",
    "csrf_token",
    "known_hash",
    "log_in",
    "log_out",
    "make_user",
]

# The password of the users make_user creates: its hash is computed once per process.
PASSWORD = "correct horse battery staple"  # noqa: S105  (a test fixture's, public)
# What Quart's test client sends unless a request's headers say otherwise.
QUART_USER_AGENT = "Quart"
_CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@cache
def _known_hash(password: str, time_cost: int, memory_cost: int, parallelism: int) -> str:
    hasher = Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher.hash(normalize(password))


async def known_hash(app: Quart, password: str = PASSWORD) -> str:
    """The hash make_user gives password under app's argon2 settings (computed once)."""
    config = app.config
    return await asyncio.to_thread(
        _known_hash,
        password,
        int(config.get("ARGON2_TIME_COST", DEFAULTS["ARGON2_TIME_COST"])),
        int(config.get("ARGON2_MEMORY_COST", DEFAULTS["ARGON2_MEMORY_COST"])),
        int(config.get("ARGON2_PARALLELISM", DEFAULTS["ARGON2_PARALLELISM"])),
    )


async def make_user(app: Quart, username: str = "alice", password: str = PASSWORD) -> User:
    """A user whose password is `password`, hashed with app's argon2 settings once per process.

    The password rules are not applied (the user is the test's setup, not its subject); the
    name is stored with the keys that registration gives it.
    """
    password_hash = await known_hash(app, password)
    async with app.app_context():
        return await accounts.store_user(username, password_hash)


async def log_in(
    client: TestClientProtocol,
    user: User,
    *,
    fresh: bool = True,
    remember: bool = False,
    address: str | None = None,
    user_agent: str = QUART_USER_AGENT,
) -> str:
    """Log client in as user: a real session and its cookie in client's jar. Returns its key.

    address and user_agent are what the client's requests will present (a LoginTestClient
    presents its own; Quart's plain test client no socket address): `session_protection`
    compares them on every request, as it does in production.
    """
    app = client.app
    if address is None:
        address = getattr(client, "remote_addr", compat.QUART_TEST_CLIENT_ADDRESS)
    who = sessions.Client(str(address), user_agent)
    async with app.app_context():
        key, _session = await sessions.start(
            user,
            remember=remember,
            fresh=fresh,
            client=who,
            device=devices.describe(user_agent),
        )
    auth = app.extensions["login_manager.auth"]
    client.set_cookie(
        _host(app),
        auth.cookie_name,
        auth.dump_token(key, app=app),
        max_age=auth.duration if remember else None,
        path=auth.cookie_path,
        secure=auth.cookie_secure,
        httponly=auth.cookie_http_only,
        samesite=auth.cookie_samesite,
    )
    # A fresh login marks this browser session as the one that logged in (login_user's mark).
    async with QuartClient.session_transaction(cast(QuartClient, client)) as browser_session:
        if fresh:
            browser_session[FRESH_MARK] = fresh_mark(key)
        else:
            browser_session.pop(FRESH_MARK, None)
    return key


async def log_out(client: TestClientProtocol, key: str) -> None:
    """End the session of key (if it still lives) and drop its cookie from client's jar."""
    app = client.app
    async with app.app_context():
        row = await AuthSession.get_or_none(key_hash=sessions.hash_key(key))
        if row is not None:
            await sessions.end(row, "logout")
    client.delete_cookie(_host(app), app.extensions["login_manager.auth"].cookie_name)


def _host(app: Quart) -> str:
    return str(app.config.get("SERVER_NAME") or "localhost")


@contextlib.asynccontextmanager
async def authenticated_client(
    client: TestClientProtocol, user: User, *, fresh: bool = True, remember: bool = False
) -> AsyncIterator[TestClientProtocol]:
    """Quart-Auth's `authenticated_client`: client is logged in as user inside the block.

    The session is a real one; leaving the block ends it.
    """
    user_agent = getattr(client, "user_agent", None) or QUART_USER_AGENT
    key = await log_in(client, user, fresh=fresh, remember=remember, user_agent=user_agent)
    try:
        yield client
    finally:
        await log_out(client, key)


class LoginTestClient(QuartClient):
    """Flask-Login's FlaskLoginClient: `app.test_client(user=user, fresh_login=True)`.

    remember=True makes a remembered session (Flask-Login's "remember me");
    user_agent, when given, is sent by every request that does not set its own.
    Requests come from 127.0.0.1, as Werkzeug's test client's do.
    """

    remote_addr = "127.0.0.1"

    def __init__(
        self,
        app: Quart,
        use_cookies: bool = True,
        *,
        user: User | None = None,
        fresh_login: bool = True,
        remember: bool = False,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(app, use_cookies)
        self.user_agent = user_agent
        self._pending: dict[str, Any] | None = None
        if user is not None:
            self._pending = {"user": user, "fresh": fresh_login, "remember": remember}
        self._lock = asyncio.Lock()
        self.session_key: str | None = None

    async def login(self, user: User, *, fresh: bool = True, remember: bool = False) -> str:
        """Log in as user now (ending this client's previous test login); the session key."""
        self._pending = None
        if self.session_key is not None:
            await log_out(cast(TestClientProtocol, self), self.session_key)
        agent = self.user_agent or QUART_USER_AGENT
        self.session_key = await log_in(
            cast(TestClientProtocol, self), user, fresh=fresh, remember=remember, user_agent=agent
        )
        return self.session_key

    async def _ensure_login(self) -> None:
        if self._pending is None:
            return
        async with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                await self.login(
                    pending["user"], fresh=pending["fresh"], remember=pending["remember"]
                )

    def _presented(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        scope = {"client": (self.remote_addr, 50000), **(kwargs.get("scope_base") or {})}
        kwargs["scope_base"] = scope
        if self.user_agent is not None:
            headers = dict(kwargs.get("headers") or {})
            if not any(name.lower() == "user-agent" for name in headers):
                headers["User-Agent"] = self.user_agent
            kwargs["headers"] = headers
        return kwargs

    async def open(self, path: str, **kwargs: Any) -> Response:
        await self._ensure_login()
        return await super().open(path, **self._presented(kwargs))

    def websocket(self, path: str, **kwargs: Any) -> TestWebsocketConnectionProtocol:
        return cast(
            TestWebsocketConnectionProtocol, _LoginFirst(self, path, self._presented(kwargs))
        )

    @contextlib.asynccontextmanager
    async def session_transaction(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        await self._ensure_login()
        async with super().session_transaction(*args, **kwargs) as browser_session:
            yield browser_session


class _LoginFirst:
    """A websocket connection opened once the client's pending login is made."""

    def __init__(self, client: LoginTestClient, path: str, kwargs: dict[str, Any]) -> None:
        self._client, self._path, self._kwargs = client, path, kwargs
        self._connection: Any = None

    async def __aenter__(self) -> Any:
        await self._client._ensure_login()
        self._connection = QuartClient.websocket(self._client, self._path, **self._kwargs)
        return await self._connection.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._connection.__aexit__(*exc)


async def csrf_token(client: TestClientProtocol, path: str) -> str:
    """The CSRF token of the form on the page at path, as this client gets it."""
    response = await client.get(path)
    match = _CSRF_FIELD.search(await response.get_data(as_text=True))
    if match is None:
        raise AssertionError(f"{path} has no CSRF field (status {response.status_code})")
    return match.group(1)
