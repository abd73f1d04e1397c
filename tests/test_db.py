"""db.Statement: one SQL text, its `?` spelled for each dialect, run on the real database."""

from __future__ import annotations

from quart import Quart

from quart_app import db
from quart_app.testing import make_user

BY_KEYS = 'SELECT "username" FROM "users" WHERE "username_key" IN (?, ?) ORDER BY "username"'


def test_postgres_numbers_the_parameters_and_sqlite_keeps_them() -> None:
    statement = db.Statement('SELECT "a" FROM "t" WHERE "b" = ? AND "c" IN (?, ?)')

    assert statement.sql("postgres") == 'SELECT "a" FROM "t" WHERE "b" = $1 AND "c" IN ($2, $3)'
    assert statement.sql("sqlite") == 'SELECT "a" FROM "t" WHERE "b" = ? AND "c" IN (?, ?)'


def test_a_statement_without_parameters_is_left_as_it_is() -> None:
    statement = db.Statement('SELECT count(*) FROM "users"')

    assert statement.sql("postgres") == statement.sql("sqlite") == statement.text


def test_each_dialect_is_spelled_once() -> None:
    statement = db.Statement("SELECT ?")

    assert statement.sql("postgres") is statement.sql("postgres")  # not built again


async def test_rows_runs_on_the_apps_database_with_its_parameters(app: Quart) -> None:
    for name in ("ada", "bob", "cy"):
        await make_user(app, name)
    statement = db.Statement(BY_KEYS)

    async with app.app_context():
        found = await statement.rows("cy", "ada")
        none = await statement.rows("nobody", "'; DROP TABLE users; --")
        again = await statement.rows("bob", "bob")

    assert found == [{"username": "ada"}, {"username": "cy"}]
    assert none == []
    assert again == [{"username": "bob"}]
