"""Fixtures for the tests of an app built on quart_app. Opt in from your top conftest.py:

    pytest_plugins = ["quart_app.pytest_plugin"]

    async def test_index(logged_in_client):
        response = await logged_in_client.get("/index/")
        assert response.status_code == 200

`app` is a fresh app per test on a SQLite file of its own, or on the PostgreSQL named by
QUART_APP_TEST_DATABASE_URL (emptied before each test); override `app_factory` to build your
own app (it takes the configuration mapping) and `app_config` to change its settings. `user`
is made with the password `quart_app.testing.PASSWORD` (hashed once per process),
`logged_in_client` is logged in as it, and `csrf_token(client, path)` reads a page's token.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol
from tortoise import Tortoise
from tortoise.connection import get_connection

from . import compat
from .models import User
from .testing import LoginTestClient, make_user
from .testing import csrf_token as page_csrf_token

DATABASE_URL_VARIABLE = "QUART_APP_TEST_DATABASE_URL"
SECRET_KEY = "quart_app-pytest-plugin-secret-key-0123456789"  # noqa: S105  (tests only)


@pytest.fixture
def app_factory() -> Callable[[Mapping[str, Any]], Quart]:
    """What builds the app from a configuration mapping: quart_app's create_app."""
    from . import create_app

    return create_app


@pytest.fixture
def app_config(tmp_path: Path) -> dict[str, Any]:
    """The test configuration: a database of this test's own, throttling off."""
    return {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": os.environ.get(DATABASE_URL_VARIABLE)
        or f"sqlite://{tmp_path / 'test.sqlite3'}",
        "RATE_LIMITER_ENABLED": False,
        "RATE_LIMIT_STORAGE": "memory",
    }


@pytest.fixture
async def app(
    app_factory: Callable[[Mapping[str, Any]], Quart], app_config: dict[str, Any], tmp_path: Path
) -> AsyncIterator[Quart]:
    """A started app, its test clients LoginTestClients, on an empty database."""
    application = app_factory(app_config)
    application.instance_path = str(tmp_path / "instance")
    application.test_client_class = LoginTestClient  # type: ignore[assignment]
    started = application.test_app()
    await started.startup()
    try:
        if not str(app_config["DATABASE_URL"]).startswith("sqlite"):
            await _empty_tables()
        yield application
    finally:
        await started.shutdown()


async def _empty_tables() -> None:
    tables = {
        compat.db_table(model) for models in Tortoise.apps.values() for model in models.values()
    }
    names = ", ".join(f'"{table}"' for table in sorted(tables))
    await get_connection("default").execute_script(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
def client(app: Quart) -> TestClientProtocol:
    """An anonymous test client."""
    return app.test_client()


@pytest.fixture
async def user(app: Quart) -> User:
    """The user alice, whose password is quart_app.testing.PASSWORD."""
    return await make_user(app, "alice")


@pytest.fixture
def logged_in_client(app: Quart, user: User) -> TestClientProtocol:
    """A test client logged in as user: a fresh, not remembered, real session."""
    return app.test_client(user=user)


@pytest.fixture
def csrf_token() -> Callable[[TestClientProtocol, str], Awaitable[str]]:
    """`await csrf_token(client, "/page/")`: the CSRF token of that page's form."""
    return page_csrf_token
