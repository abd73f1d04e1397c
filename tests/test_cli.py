"""The `quart --app quart_app` commands: users create, list, disable, import-flask; migrate."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

import pytest
from click.testing import Result
from quart import Quart
from tortoise import Tortoise
from werkzeug.security import generate_password_hash

from quart_app import create_app, db, two_factor
from quart_app.models import TotpSecret, User

from .conftest import PASSWORD, USE_POSTGRES, base_config

T = TypeVar("T")


@pytest.fixture
def cli_app(tmp_path: Path) -> Quart:
    """An app on a database that outlives each command (a file, or the test PostgreSQL)."""
    url = base_config()["DATABASE_URL"]
    if not USE_POSTGRES:
        url = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    app = create_app(base_config(DATABASE_URL=url))
    app.instance_path = str(tmp_path)
    if USE_POSTGRES:
        query(app, lambda: User.all().delete())
    return app


def invoke(app: Quart, *args: str, input: str | None = None) -> Result:
    return cast(Result, app.test_cli_runner().invoke(args=list(args), input=input))


def query(app: Quart, work: Callable[[], Awaitable[T]]) -> T:
    """Run an ORM call against the app's database, outside any command."""

    async def main() -> T:
        await db.connect(app)
        try:
            return await work()
        finally:
            await Tortoise.close_connections()

    return asyncio.run(main())


def users(app: Quart) -> list[User]:
    return query(app, lambda: User.all().order_by("id"))


def test_migrate_creates_the_schema(cli_app: Quart) -> None:
    result = invoke(cli_app, "migrate")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert users(cli_app) == []


def test_create_prompts_for_the_password(cli_app: Quart) -> None:
    result = invoke(cli_app, "users", "create", "张伟", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Created user 张伟" in result.output
    [user] = users(cli_app)
    assert user.username == "张伟"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("x", PASSWORD, "2 to 32 characters"),
        ("good_name", "short", "8 to 1024"),
        ("good_name", "password1", "too common"),
    ],
)
def test_create_refuses_bad_input_clearly(
    cli_app: Quart, username: str, password: str, message: str
) -> None:
    result = invoke(cli_app, "users", "create", username, "--password", password)
    assert result.exit_code != 0
    assert message in result.output
    assert users(cli_app) == []


def test_create_refuses_a_taken_name(cli_app: Quart) -> None:
    invoke(cli_app, "users", "create", "alice", "--password", PASSWORD)
    result = invoke(cli_app, "users", "create", "ALICE", "--password", PASSWORD)
    assert result.exit_code != 0
    assert "already taken" in result.output
    assert len(users(cli_app)) == 1


def test_list_and_disable(cli_app: Quart) -> None:
    for name in ("alice", "bob"):
        invoke(cli_app, "users", "create", name, "--password", PASSWORD)
    result = invoke(cli_app, "users", "disable", "BOB")
    assert result.exit_code == 0, result.output
    listing = invoke(cli_app, "users", "list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert any("alice" in line and "active" in line for line in lines)
    assert any("bob" in line and "disabled" in line for line in lines)
    assert "2 user(s)" in listing.output
    assert [u.is_active for u in users(cli_app)] == [True, False]


def test_disable_unknown_user_fails(cli_app: Quart) -> None:
    result = invoke(cli_app, "users", "disable", "nobody")
    assert result.exit_code != 0
    assert "No user named 'nobody'" in result.output


def flask_database(path: Path, table: str = "users") -> Path:
    """A database as the Flask-Login tutorial leaves it, with werkzeug's hashes."""
    with sqlite3.connect(path) as connection:
        connection.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, username TEXT, password_hash TEXT)"
        )
        connection.executemany(
            f"INSERT INTO {table} (username, password_hash) VALUES (?, ?)",  # noqa: S608
            [
                ("bob", generate_password_hash("bob's old password", method="scrypt")),
                ("Carol", generate_password_hash("carol's password", method="pbkdf2:sha256")),
                ("bad name", generate_password_hash("whatever password")),
                ("dave", "md5$not-a-werkzeug-hash"),
            ],
        )
    return path


def test_import_flask_copies_users_and_hashes(cli_app: Quart, tmp_path: Path) -> None:
    source = flask_database(tmp_path / "flask.db")
    result = invoke(cli_app, "users", "import-flask", str(source))
    assert result.exit_code == 0, result.output
    assert "Imported 2 user(s), skipped 2." in result.output
    assert "'bad name'" in result.output
    assert "'dave'" in result.output
    imported = {u.username: u.password_hash for u in users(cli_app)}
    assert set(imported) == {"bob", "Carol"}
    assert imported["bob"].startswith("scrypt:")
    assert imported["Carol"].startswith("pbkdf2:sha256:")
    # Run twice: nothing is duplicated, the existing names are reported.
    again = invoke(cli_app, "users", "import-flask", f"sqlite:///{source}")
    assert "Imported 0 user(s), skipped 4." in again.output
    assert len(users(cli_app)) == 2


def test_import_flask_reads_the_user_table_of_flask_sqlalchemy(
    cli_app: Quart, tmp_path: Path
) -> None:
    source = flask_database(tmp_path / "flask.db", table="user")
    result = invoke(cli_app, "users", "import-flask", str(source))
    assert result.exit_code == 0, result.output
    assert "Imported 2 user(s)" in result.output


@pytest.mark.parametrize(
    ("make_source", "options", "message"),
    [
        (lambda p: p / "missing.db", (), "Cannot read users"),
        (lambda p: flask_database(p / "f.db", table="people"), (), "no table named users or user"),
        (lambda p: flask_database(p / "f.db"), ("--table", "x;drop table"), "is not a table name"),
    ],
)
def test_import_flask_bad_source_is_a_clear_error(
    cli_app: Quart, tmp_path: Path, make_source: object, options: tuple[str, ...], message: str
) -> None:
    source = make_source(tmp_path)  # type: ignore[operator]
    result = invoke(cli_app, "users", "import-flask", str(source), *options)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_import_flask_applies_the_username_rule(cli_app: Quart, tmp_path: Path) -> None:
    source = tmp_path / "flask.db"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE users (id INTEGER, username TEXT, password_hash TEXT)")
        connection.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [
                (n, name, generate_password_hash(PASSWORD, method="scrypt"))
                for n, name in enumerate(
                    ["mary", "rnary", "alice\u3164", "\u0430lice", "alice", "ALICE"]
                )
            ],
        )
    result = invoke(cli_app, "users", "import-flask", str(source))
    assert result.exit_code == 0, result.output
    assert "Imported 2 user(s), skipped 4." in result.output
    assert "'rnary': looks like the existing user 'mary'" in result.output
    assert "'alice\u3164': Username must not contain invisible" in result.output
    assert "'\u0430lice': Username must not mix" in result.output
    assert "'ALICE': a user of that name exists" in result.output
    assert [u.username for u in users(cli_app)] == ["mary", "alice"]


def test_lookalikes_lists_the_groups_of_existing_names(cli_app: Quart) -> None:
    invoke(cli_app, "migrate")

    async def old_rows() -> None:
        # Rows from before the rule: the younger look-alikes hold no skeleton.
        await User.create(
            username="alice", username_key="alice", username_skeleton="s1", password_hash="x"
        )
        await User.create(
            username="bob", username_key="bob", username_skeleton="s2", password_hash="x"
        )
        await User.create(username="\u0430lice", username_key="\u0430lice", password_hash="x")
        await User.create(username="alice\u3164", username_key="alice\u3164", password_hash="x")

    query(cli_app, old_rows)
    result = invoke(cli_app, "users", "lookalikes")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "look alike: 'alice', '\u0430lice', 'alice\u3164'"
    assert "alice\t'alice'" in lines[1]
    assert lines[1].endswith("holds the skeleton")
    assert "'\\u0430lice'" in lines[2]
    assert lines[2].endswith("no skeleton")
    assert "'alice\\u3164'" in lines[3]
    assert lines[-1] == "1 group(s) of look-alike names"


def test_disable_finds_a_name_from_before_the_rule(cli_app: Quart) -> None:
    invoke(cli_app, "migrate")
    query(
        cli_app, lambda: User.create(username="Straße", username_key="strasse", password_hash="x")
    )
    result = invoke(cli_app, "users", "disable", "STRASSE")
    assert result.exit_code == 0, result.output
    assert [u.is_active for u in users(cli_app)] == [False]


def test_reencrypt_totp_moves_secrets_to_the_current_key(cli_app: Quart) -> None:
    old_key = "an-older-secret-key-that-is-long-enough-987654"
    new_key = str(cli_app.config["SECRET_KEY"])
    invoke(cli_app, "users", "create", "alice", "--password", PASSWORD)

    async def store_under_old_key() -> None:
        async with cli_app.app_context():
            cli_app.config["SECRET_KEY"] = old_key
            user = await User.get(username="alice")
            await TotpSecret.create(user_id=user.id, secret=two_factor.encrypt("JBSWY3DPEHPK3PXP"))
            cli_app.config["SECRET_KEY"] = new_key

    query(cli_app, store_under_old_key)
    assert invoke(cli_app, "users", "reencrypt-totp").exit_code != 0  # the old key is unknown
    cli_app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    result = invoke(cli_app, "users", "reencrypt-totp")
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1 TOTP secret(s)" in result.output
    cli_app.config["SECRET_KEY_FALLBACKS"] = []

    async def read() -> tuple[str, bool]:
        async with cli_app.app_context():
            return two_factor.decrypt((await TotpSecret.get()).secret)

    assert query(cli_app, read) == ("JBSWY3DPEHPK3PXP", False)
