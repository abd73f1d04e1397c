"""Fixtures: a fresh app and database per test, and AuthActions that log clients in.

AuthActions drive the real forms in the modules whose subject is the login (REAL_FORMS);
elsewhere their register and login, with the default password, are setup: the user is made
with a hash computed once (quart_app.testing.make_user) and the client is logged in through a
real server-side session (quart_app.testing.log_in), without a form or an argon2 hash.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client
from tortoise.connection import get_connection

from quart_app import create_app
from quart_app.accounts import username_key
from quart_app.models import User
from quart_app.sessions.cache import SessionCache
from quart_app.testing import known_hash, log_in, make_user

# Set by .ci/run: the suite runs once on SQLite and once on this PostgreSQL.
POSTGRES_URL = os.environ.get("QUART_TEST_POSTGRES_URL")
USE_POSTGRES = os.environ.get("QUART_TEST_BACKEND") == "postgres"
REDIS_URL = os.environ.get("QUART_TEST_REDIS_URL")
# Set by .ci/run: a test that would be skipped for a missing service fails instead.
REQUIRE_ALL = os.environ.get("QUART_TEST_REQUIRE_ALL") == "1"

PASSWORD = "correct horse battery staple"
CSRF_PATTERN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')

AppFactory = Callable[..., Awaitable[Quart]]


def require(condition: bool, reason: str) -> None:
    """Skip when a service is missing on a laptop; fail when CI promised it."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def test_database_url() -> str:
    if not USE_POSTGRES:
        return "sqlite://:memory:"
    require(POSTGRES_URL is not None, "QUART_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    return POSTGRES_URL


test_database_url.__test__ = False  # type: ignore[attr-defined]


def base_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "DATABASE_URL": test_database_url(),
        # Every test client is 127.0.0.1: throttling tests turn it on with their own limits.
        "RATE_LIMITER_ENABLED": False,
        "SESSION_PROTECTION": "strong",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session", autouse=True)
def postgres_database() -> None:
    """On the PostgreSQL run, start from an empty database of our own."""
    if USE_POSTGRES and POSTGRES_URL is not None:
        asyncio.run(recreate_database(POSTGRES_URL))


async def recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(("postgresql", parts.netloc, "/postgres", "", "")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


# On SQLite each app gets a copy of one database file migrated once per process: migrating
# an empty database replays Tortoise's model states, about 0.2 s of every test's setup.
_migrated_sqlite: list[Path] = []


async def migrated_sqlite(factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied and no rows, made at the first call."""
    if not _migrated_sqlite:
        template = factory.mktemp("migrated") / "migrated.sqlite3"
        test_app = create_app(base_config(DATABASE_URL=f"sqlite://{template}")).test_app()
        await test_app.startup()
        await test_app.shutdown()
        _migrated_sqlite.append(template)
    return _migrated_sqlite[0]


def sqlite_copy(template: Path, directory: Path) -> str:
    """The URL of a new copy of template in directory; its writes are not synced to disk."""
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"db-{secrets.token_hex(4)}.sqlite3"
    shutil.copyfile(template, copy)
    return f"sqlite://{copy}?synchronous=OFF"


@pytest.fixture
async def make_app(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AppFactory]:
    """Start apps with configuration overrides; each gets an empty database of its own."""
    started: list[Any] = []

    async def factory(**overrides: Any) -> Quart:
        if not USE_POSTGRES and "DATABASE_URL" not in overrides:
            template = await migrated_sqlite(tmp_path_factory)
            overrides["DATABASE_URL"] = sqlite_copy(template, tmp_path / "databases")
        app = create_app(base_config(**overrides))
        app.instance_path = str(tmp_path / "instance")
        test_app = app.test_app()
        await test_app.startup()
        started.append(test_app)
        if USE_POSTGRES:
            await get_connection("default").execute_script(
                "TRUNCATE users, sessions, api_tokens, totp_secrets, recovery_codes, passkeys,"
                " pending_logins, webauthn_challenges, recovery_tokens, outbox"
                " RESTART IDENTITY CASCADE"
            )
        return app

    yield factory
    for test_app in reversed(started):
        await test_app.shutdown()


@pytest.fixture
async def app(make_app: AppFactory) -> Quart:
    return await make_app()


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


def csrf_token(body: str) -> str:
    match = CSRF_PATTERN.search(body)
    assert match, "the page has no CSRF field"
    return match.group(1)


# Test modules whose subject is registering or logging in: AuthActions post the real forms.
REAL_FORMS = {
    "tests.test_views",
    "tests.test_login",
    "tests.test_flow",
    "tests.test_accounts",
    "tests.test_i18n",
    "tests.test_two_factor",
    "tests.test_passkeys",
    "tests.test_pending_routes",
    "tests.test_usernames",
}


class AuthActions:
    """Drive the real pages, as flaskr's tests do, fetching each form's CSRF token first.

    Where the login is not the test's subject (fast), a register or login with the default
    password makes the user and the session directly and answers as the form would: 303 to
    the index (or next).
    """

    # Set for each test by the autouse fixture below, from the test's module.
    fast = False

    def __init__(self, client: Client) -> None:
        self.client = client

    def _setup_answer(self, next: str | None = None) -> Response:
        return Response("", 303, {"Location": next or "/index/"})

    async def token(self, path: str) -> str:
        response = await self.client.get(path)
        return csrf_token(await response.get_data(as_text=True))

    async def register(
        self,
        username: str = "alice",
        password: str = PASSWORD,
        confirm: str | None = None,
        headers: dict[str, str] | None = None,
        email: str = "",
    ) -> Response:
        if self.fast and password == PASSWORD and confirm is None and headers is None and not email:
            user = await make_user(self.client.app, username, password)
            await log_in(self.client, user)
            return self._setup_answer()
        form = {
            "username": username,
            "email": email,
            "password": password,
            "password_confirm": password if confirm is None else confirm,
            "csrf_token": await self.token("/register/"),
        }
        return await self.client.post("/register/", form=form, headers=headers)

    async def login(
        self,
        username: str = "alice",
        password: str = PASSWORD,
        remember: bool = False,
        next: str | None = None,
    ) -> Response:
        if self.fast and password == PASSWORD:
            async with self.client.app.app_context():
                user = await User.get_or_none(username_key=username_key(username))
            known = await known_hash(self.client.app, password)
            if user is not None and user.is_active and user.password_hash == known:
                await log_in(self.client, user, remember=remember)
                return self._setup_answer(next)
        form = {
            "username": username,
            "password": password,
            "csrf_token": await self.token("/login/"),
        }
        if remember:
            form["remember"] = "y"
        path = "/login/" if next is None else f"/login/?next={next}"
        return await self.client.post(path, form=form)

    async def logout(self) -> Response:
        token = await self.token("/logout/")
        return await self.client.post("/logout/", form={"csrf_token": token})


@pytest.fixture(autouse=True)
def _setup_logins(request: pytest.FixtureRequest) -> None:
    AuthActions.fast = request.module.__name__ not in REAL_FORMS


@pytest.fixture
def auth(client: Client) -> AuthActions:
    return AuthActions(client)


def forget_copies(app: Quart) -> None:
    """After a test writes the sessions table itself: drop the sessions the app kept in memory.

    Changes made through the app drop them at once; a direct write is otherwise noticed
    within SESSION_TOUCH_INTERVAL, which the test should not have to wait for.
    """
    cast(SessionCache, app.extensions["session_cache"]).clear()


def auth_cookie(client: Client, name: str = "quart_app_auth") -> str | None:
    """The value of the login cookie in client's jar, if any."""
    assert client.cookie_jar is not None
    return next((c.value for c in client.cookie_jar if c.name == name), None)


CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, headless, as root, and quiet on a machine with no network but loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium: Playwright's own browser download is not available here."""
    require(os.path.exists(CHROMIUM), f"Chromium is not installed at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear QUART_* variables, so a test sees only what it sets."""
    for key in list(os.environ):
        if key.startswith("QUART_") and not key.startswith("QUART_TEST_"):
            monkeypatch.delenv(key)
