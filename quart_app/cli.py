"""`quart --app quart_app users ...`: create, list, disable, look-alikes, import from Flask."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import click
from quart import Quart
from quart.cli import ScriptInfo
from tortoise import Tortoise

from . import accounts, db, two_factor, usernames
from .models import User
from .passwords import ARGON2_PREFIX, WERKZEUG_PREFIXES

T = TypeVar("T")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

users = click.Group("users", help="Manage accounts.")


def init_app(app: Quart) -> None:
    app.cli.add_command(users)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run work with the database open, inside the app context."""
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()

    async def main() -> T:
        await db.connect(app)
        try:
            async with app.app_context():
                return await work()
        finally:
            await Tortoise.close_connections()

    return asyncio.run(main())


@users.command("create")
@click.argument("username")
@click.password_option(help="Asked for when not given.")
def create(username: str, password: str) -> None:
    """Create an account; the same rules as the registration form."""
    try:
        name = accounts.clean_username(username)
        accounts.check_password(password, name)
        user = run(lambda: accounts.create_user(name, password))
    except (accounts.InvalidField, accounts.UsernameTaken) as error:
        raise click.ClickException(str(error.description)) from None
    click.echo(f"Created user {user.username} (id {user.id}).")


@users.command("reencrypt-totp")
def reencrypt_totp() -> None:
    """Encrypt every TOTP secret under the current secret key (after a key rotation)."""
    moved, unreadable = run(two_factor.reencrypt_all)
    click.echo(f"Re-encrypted {moved} TOTP secret(s) under the current key.")
    if unreadable:
        raise click.ClickException(
            f"{unreadable} secret(s) match neither SECRET_KEY nor SECRET_KEY_FALLBACKS."
        )


@users.command("list")
def list_users() -> None:
    """List the accounts."""
    rows = run(lambda: User.all().order_by("id"))
    for user in rows:
        state = "active" if user.is_active else "disabled"
        click.echo(f"{user.id}\t{user.username}\t{state}\t{user.created_at:%Y-%m-%d %H:%M}")
    click.echo(f"{len(rows)} user(s)")


@users.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Disable an account and end all its sessions and API tokens."""

    async def work() -> bool:
        user = await accounts.find_user(username)
        if user is None:
            return False
        await accounts.disable(user)
        return True

    if not run(work):
        raise click.ClickException(f"No user named {username!r}.")
    click.echo(f"Disabled {username}; its sessions and tokens have ended.")


@users.command("import-flask")
@click.argument("source")
@click.option("--table", default=None, help="Table holding the users (default: users, or user).")
def import_flask(source: str, table: str | None) -> None:
    """Copy users and werkzeug hashes from a Flask-Login app's database.

    SOURCE is a SQLite file, sqlite:///PATH, or postgres://... The hashes are kept as they
    are and become argon2id at each user's next login.
    """
    try:
        rows = list(_read_flask_users(source, table))
    except (sqlite3.Error, OSError, asyncpg.PostgresError, LookupError) as error:
        raise click.ClickException(f"Cannot read users from {source}: {error}") from None

    async def work() -> tuple[int, list[str]]:
        imported, skipped = 0, []
        for username, password_hash in rows:
            try:
                await _import_one(username, password_hash)
                imported += 1
            except (accounts.InvalidField, ValueError) as error:
                skipped.append(f"{username!r}: {getattr(error, 'description', error)}")
        return imported, skipped

    imported, skipped = run(work)
    for line in skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"Imported {imported} user(s), skipped {len(skipped)}.")


async def _import_one(username: object, password_hash: object) -> None:
    """Insert one Flask user under the username rule, or ValueError saying why not."""
    if not isinstance(username, str) or not isinstance(password_hash, str):
        raise ValueError("username or hash is not text")
    if not password_hash.startswith((*WERKZEUG_PREFIXES, ARGON2_PREFIX)):
        raise ValueError("the hash is not werkzeug's scrypt or pbkdf2 (nor argon2id)")
    name = accounts.clean_name(username)
    try:
        await accounts.store_user(username, password_hash)
    except accounts.UsernameTaken:
        if await User.exists(username_key=name.key):
            raise ValueError("a user of that name exists") from None
        other = await User.get_or_none(username_skeleton=name.skeleton)
        shown = repr(other.username) if other else "another user"
        raise ValueError(f"looks like the existing user {shown}") from None


@users.command("lookalikes")
def lookalikes() -> None:
    """List the groups of existing names that look alike (UTS #39 skeletons).

    They predate the username rule, which keeps new ones out. The first of each group, the
    oldest, holds the skeleton; none is renamed.
    """
    rows = run(lambda: User.all().order_by("created_at", "id"))
    by_id = {user.id: user for user in rows}
    groups = usernames.lookalike_groups((user.id, user.username) for user in rows)
    for group in groups:
        click.echo(f"look alike: {', '.join(repr(name) for _, name in group)}")
        for user_id, name in group:
            user = by_id[user_id]
            kept = "holds the skeleton" if user.username_skeleton else "no skeleton"
            click.echo(f"  {user_id}\t{name}\t{name!a}\t{user.created_at:%Y-%m-%d}\t{kept}")
    click.echo(f"{len(groups)} group(s) of look-alike names")


def _read_flask_users(source: str, table: str | None) -> Iterator[tuple[object, object]]:
    """(username, password_hash) pairs from the Flask app's users table."""
    if table is not None and not IDENTIFIER.fullmatch(table):
        raise LookupError(f"{table!r} is not a table name")
    tables = [table] if table else ["users", "user"]
    if source.startswith(("postgres://", "postgresql://")):
        yield from asyncio.run(_read_postgres(source, tables))
        return
    path = source.removeprefix("sqlite:///").removeprefix("sqlite://")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        found = next((t for t in tables if t in names), None)
        if found is None:
            raise LookupError(f"no table named {' or '.join(tables)}")
        columns = {row[1] for row in connection.execute(f'PRAGMA table_info("{found}")')}
        hash_column = _hash_column(columns)
        # Both names were read from the database's own catalogue.
        yield from connection.execute(f'SELECT username, "{hash_column}" FROM "{found}"')  # noqa: S608


async def _read_postgres(url: str, tables: list[str]) -> list[tuple[object, object]]:
    parts = urlsplit(url)
    connection = await asyncpg.connect(f"postgresql://{parts.netloc}{parts.path}")
    try:
        for name in tables:
            columns = {
                r["column_name"]
                for r in await connection.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                    name,
                )
            }
            if columns:
                hash_column = _hash_column(columns)
                query = f'SELECT username, "{hash_column}" FROM "{name}"'  # noqa: S608
                rows = await connection.fetch(query)
                return [(r[0], r[1]) for r in rows]
        raise LookupError(f"no table named {' or '.join(tables)}")
    finally:
        await connection.close()


def _hash_column(columns: set[str]) -> str:
    if "username" not in columns:
        raise LookupError("the table has no username column")
    for name in ("password_hash", "password"):
        if name in columns:
            return name
    raise LookupError("the table has no password_hash (or password) column")
