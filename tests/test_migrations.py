"""The migrations of quart_app/migrations/ on a database that already holds users."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from quart import Quart
from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget
from werkzeug.security import generate_password_hash

from quart_app import accounts, compat, create_app, db, usernames
from quart_app.models import User

from .conftest import PASSWORD, POSTGRES_URL, USE_POSTGRES, base_config, recreate_database


def old_row(user_id: int, typed: str, created: datetime) -> tuple[int, str, str, datetime]:
    """A row as the rule before 0006 stored it: the name NFKC-normalised, the key folded."""
    name = unicodedata.normalize("NFKC", typed)
    return user_id, name, usernames.legacy_key(name), created


# The oldest of each look-alike group is not the lowest id, so age is what decides.
OLD_ROWS = [
    old_row(1, "аlice", datetime(2024, 3, 1, tzinfo=UTC)),  # Cyrillic а
    old_row(2, "alice", datetime(2024, 1, 1, tzinfo=UTC)),
    old_row(3, "alice\u3164", datetime(2024, 2, 1, tzinfo=UTC)),  # HANGUL FILLER
    old_row(4, "bob", datetime(2024, 1, 2, tzinfo=UTC)),
    old_row(5, "\u3164\u3164", datetime(2024, 1, 3, tzinfo=UTC)),  # invisible letters only
    old_row(6, "Straße", datetime(2024, 1, 4, tzinfo=UTC)),  # its key: "strasse"
]


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of its own: a SQLite file, or a second PostgreSQL database."""
    if not USE_POSTGRES:
        yield f"sqlite://{tmp_path / 'old.sqlite3'}"
        return
    assert POSTGRES_URL is not None
    url = POSTGRES_URL + "_migrations"
    await recreate_database(url)
    yield url
    parts = urlsplit(url)
    admin = await asyncpg.connect(urlunsplit(("postgresql", parts.netloc, "/postgres", "", "")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()


async def migrate(url: str, target: str | None) -> None:
    config = db.tortoise_config(url)
    await Tortoise.init(config=config, **compat.tortoise_init_options())
    try:
        targets = None if target is None else [MigrationTarget(app_label="models", name=target)]
        await MigrationExecutor(get_connection("default"), config["apps"]).migrate(targets)
    finally:
        await Tortoise.close_connections()


async def insert_old_users(url: str) -> None:
    await Tortoise.init(config=db.tortoise_config(url), **compat.tortoise_init_options())
    connection = get_connection("default")
    marks = ", ".join(f"${n}" if USE_POSTGRES else "?" for n in range(1, 6))
    old_hash = generate_password_hash(PASSWORD, method="scrypt")
    columns = "id, username, username_key, password_hash, created_at"
    # Only placeholders are formatted into the statement.
    insert = (
        f"INSERT INTO users ({columns}, is_active, credential_generation) VALUES ({marks}, TRUE, 0)"  # noqa: S608
    )
    try:
        for user_id, name, key, created in OLD_ROWS:
            await connection.execute_query(insert, [user_id, name, key, old_hash, created])
    finally:
        await Tortoise.close_connections()


async def test_existing_lookalikes_are_kept_and_reported(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate(database_url, "0003_session_owner")
    await insert_old_users(database_url)

    with caplog.at_level(logging.WARNING, logger="quart_app.migrations"):
        await migrate(database_url, None)

    reported = [r.getMessage() for r in caplog.records if r.name == "quart_app.migrations"]
    assert len(reported) == 2, reported
    assert '"looks_like_user_id": 2' in reported[0]
    assert '"user_id": 3' in reported[0]  # alice + U+3164, younger than alice
    assert '"user_id": 1' in reported[1]  # Cyrillic а, the youngest

    app = create_app(base_config(DATABASE_URL=database_url))
    async with app.test_app():
        rows = {u.id: u for u in await User.all()}
        # Nobody renamed or removed; the oldest of each look-alike group holds the skeleton.
        assert {(u.id, u.username, u.username_key) for u in rows.values()} == {
            (user_id, name, key) for user_id, name, key, _ in OLD_ROWS
        }
        assert [user_id for user_id, u in sorted(rows.items()) if u.username_skeleton is None] == [
            1,
            3,
        ]
        assert rows[2].username_skeleton == usernames.skeleton_digest("alice")
        await check_the_old_names_still_work(app)


async def check_the_old_names_still_work(app: Quart) -> None:
    async with app.app_context():
        # Each logs in as before, werkzeug hash and all, though the rule would refuse some.
        for name, user_id in [("alice\u3164", 3), ("аlice", 1), ("\u3164\u3164", 5)]:
            assert (await accounts.authenticate(name, PASSWORD, "127.0.0.1")).id == user_id
        # A pre-PRECIS key (case folding made "strasse"): found by the key of before.
        for typed in ("Straße", "straße", "STRASSE"):
            assert (await accounts.authenticate(typed, PASSWORD, "127.0.0.1")).id == 6
        # None of them, nor a look-alike of them, can be registered again.
        for name in ("alice", "ALICE", "bob", "straße", "strasse"):
            with pytest.raises(accounts.UsernameTaken):
                await accounts.register(name, PASSWORD, "127.0.0.1")
        assert await User.all().count() == len(OLD_ROWS)


async def test_a_database_of_the_first_schema_with_users_migrates_to_the_last(
    database_url: str,
) -> None:
    """Columns added to tables that hold rows get their defaults in the database too."""
    await migrate(database_url, "0002_api_tokens")
    await Tortoise.init(config=db.tortoise_config(database_url), **compat.tortoise_init_options())
    marks = ", ".join(f"${n}" if USE_POSTGRES else "?" for n in range(1, 6))
    columns = "id, username, username_key, password_hash, created_at"
    # Only placeholders are formatted into the statement.
    insert = f"INSERT INTO users ({columns}, is_active) VALUES ({marks}, TRUE)"  # noqa: S608
    old_hash = generate_password_hash(PASSWORD, method="scrypt")
    try:
        await get_connection("default").execute_query(
            insert, [1, "mary", "mary", old_hash, datetime(2024, 1, 1, tzinfo=UTC)]
        )
    finally:
        await Tortoise.close_connections()

    await migrate(database_url, None)

    app = create_app(base_config(DATABASE_URL=database_url))
    async with app.test_app(), app.app_context():
        (user,) = await User.all()
        assert (user.credential_generation, user.email, user.email_verified, user.locale) == (
            0,
            None,
            False,
            "en",
        )
        assert user.username_skeleton == usernames.skeleton_digest("mary")
        assert (await accounts.authenticate("mary", PASSWORD, "127.0.0.1")).id == 1
