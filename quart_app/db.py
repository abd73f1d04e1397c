"""Tortoise ORM: connect in the serving hooks, apply migrations on start, one worker at a time."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import click
from quart import Quart, ResponseReturnValue
from quart.cli import ScriptInfo
from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor

from . import compat

APP_LABEL = "models"
# An arbitrary constant: the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK_ID = 0x71A7_0001


def tortoise_config(db_url: str, pool_size: int = 10) -> dict[str, Any]:
    """Tortoise's configuration for one database URL (also read by the `tortoise` CLI)."""
    if (
        db_url.startswith(("postgres://", "postgresql://", "asyncpg://"))
        and "maxsize=" not in db_url
    ):
        db_url += ("&" if "?" in db_url else "?") + f"maxsize={pool_size}"
    return {
        "connections": {"default": db_url},
        "apps": {
            APP_LABEL: {
                "models": ["quart_app.models"],
                "default_connection": "default",
                "migrations": "quart_app.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


class Statement:
    """One SQL statement of a hot path, written once: `?` marks each parameter.

    Building a Tortoise queryset costs several times the CPU of running its query; a
    statement is spelled once per dialect ($1, $2... on PostgreSQL) and run as it is.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._spelled: dict[str, str] = {}

    def sql(self, dialect: str) -> str:
        spelled = self._spelled.get(dialect)
        if spelled is None:
            parts = self.text.split("?")
            if dialect == "postgres":
                marks = [f"${n}" for n in range(1, len(parts))]
            else:
                marks = ["?"] * (len(parts) - 1)
            spelled = parts[0] + "".join(m + p for m, p in zip(marks, parts[1:], strict=True))
            self._spelled[dialect] = spelled
        return spelled

    async def rows(self, *params: Any) -> list[dict[str, Any]]:
        """The rows it returns, run on the default connection."""
        connection = get_connection("default")
        sql = self.sql(connection.capabilities.dialect)
        return cast(list[dict[str, Any]], await connection.execute_query_dict(sql, list(params)))


# For `tortoise -c quart_app.db.TORTOISE_ORM makemigrations`, run from the project folder.
TORTOISE_ORM = tortoise_config(
    os.environ.get("QUART_DATABASE_URL", "sqlite://instance/quart_app.sqlite3")
)


def init_app(app: Quart) -> None:
    async def open_database() -> None:
        await connect(app)

    app.before_serving(open_database)
    app.after_serving(Tortoise.close_connections)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.cli.add_command(migrate_command)


async def healthz() -> ResponseReturnValue:
    """For load balancers: 200 when the database answers, else 503 (by the error handler)."""
    await get_connection("default").execute_query("SELECT 1")
    return {"status": "ok"}


async def connect(app: Quart) -> None:
    """Connect, then bring the schema up to date (creating the tables on first start)."""
    config = tortoise_config(app.config["DATABASE_URL"], app.config["DATABASE_POOL_SIZE"])
    # Requests run in other tasks than before_serving: share the context process-wide.
    await Tortoise.init(config=config, **compat.tortoise_init_options())
    try:
        async with _migration_lock(app.config["DATABASE_URL"]):
            await MigrationExecutor(get_connection("default"), config["apps"]).migrate()
    except BaseException:
        # Close, or aiosqlite's thread keeps a worker that cannot serve alive forever.
        await Tortoise.close_connections()
        raise


@asynccontextmanager
async def _migration_lock(db_url: str) -> AsyncIterator[None]:
    """Hold a lock across processes (and, on PostgreSQL, machines) while migrating."""
    parts = urlsplit(db_url)
    if parts.scheme == "sqlite":
        path = db_url.removeprefix("sqlite://").split("?")[0]
        if path in ("", ":memory:"):
            yield
            return
        lock_path = Path(path).with_suffix(".migrate-lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
        return
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        yield
    finally:
        await connection.close()  # closing the session releases the lock


@click.command("migrate")
def migrate_command() -> None:
    """Apply the schema migrations to QUART_DATABASE_URL (the server also does on start)."""
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()

    async def run() -> None:
        await connect(app)
        await Tortoise.close_connections()

    asyncio.run(run())
    click.echo("The database schema is up to date.")
