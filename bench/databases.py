"""The targets' databases: schema made by each app itself, users seeded straight into the table.

Hashing a password per seeded user would take hours for 100,000 users, so every seeded user
gets one precomputed hash of the same password, made with the app's own parameters (a login
then never needs a rehash).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from argon2 import PasswordHasher, Type
from werkzeug.security import generate_password_hash

from .servers import BENCH, VENV_BIN

SEED_PASSWORD = "bench-seeded-password-7"  # noqa: S105  (the benchmark users' password)
MIGRATE_TIMEOUT = 120.0
BENCH_DATABASE = "quart_app_bench"


def username(number: int) -> str:
    return f"user{number:06d}"


ARGON2_SETTINGS = ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM")


def argon2_settings(app_dir: Path, env: Mapping[str, str]) -> dict[str, int]:
    """quart_app.config.DEFAULTS' argon2 parameters, read by a Python of their own.

    Importing quart_app builds its app (and its instance folder) as a side effect; a child
    process with a throwaway QUART_INSTANCE_PATH keeps that out of the benchmark.
    """
    code = (
        "import json; from quart_app.config import DEFAULTS; "
        f"print(json.dumps({{k: DEFAULTS[k] for k in {ARGON2_SETTINGS!r}}}))"
    )
    done = subprocess.run(  # noqa: S603  (fixed argv, no shell)
        [str(VENV_BIN / "python"), "-c", code],
        cwd=app_dir,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=MIGRATE_TIMEOUT,
    )
    return {key: int(value) for key, value in json.loads(done.stdout.splitlines()[-1]).items()}


def app_hasher(settings: Mapping[str, int]) -> PasswordHasher:
    """argon2id with quart_app's own parameters."""
    return PasswordHasher(
        time_cost=settings["ARGON2_TIME_COST"],
        memory_cost=settings["ARGON2_MEMORY_COST"],
        parallelism=settings["ARGON2_PARALLELISM"],
        type=Type.ID,
    )


def migrate_quart_app(app_dir: Path, env: Mapping[str, str], log: Path) -> None:
    """Let quart_app create its schema, as it does on start (`quart --app quart_app migrate`)."""
    with log.open("ab") as output:
        subprocess.run(  # noqa: S603  (fixed argv, no shell)
            [str(VENV_BIN / "quart"), "--app", "quart_app", "migrate"],
            cwd=app_dir,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=MIGRATE_TIMEOUT,
        )


# The columns every version of quart_app's `users` has, and those of some versions only
# (with the value a new user gets), so that --app-rev can seed an older schema too.
USER_COLUMNS = ["username", "username_key", "password_hash", "is_active", "created_at"]
OPTIONAL_COLUMNS: dict[str, object] = {"credential_generation": 0}


def _quart_app_rows(count: int, password_hash: str) -> Iterator[tuple[str, str, str, bool]]:
    for number in range(count):
        name = username(number)
        yield name, name.casefold(), password_hash, True


def seed_quart_app_sqlite(path: Path, count: int, hasher: PasswordHasher) -> None:
    """Insert count users into quart_app's `users` table of a SQLite file."""
    password_hash = hasher.hash(SEED_PASSWORD)
    # Tortoise's own text form of an aware datetime, as the app writes created_at.
    created_at = str(datetime.now(UTC))
    with sqlite3.connect(path) as db:
        present = {row[1] for row in db.execute("PRAGMA table_info(users)")}
        extra = [column for column in OPTIONAL_COLUMNS if column in present]
        columns = [*USER_COLUMNS, *extra]
        marks = ", ".join("?" for _ in columns)
        db.executemany(
            f"INSERT INTO users ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
            (
                (*row, created_at, *(OPTIONAL_COLUMNS[c] for c in extra))
                for row in _quart_app_rows(count, password_hash)
            ),
        )
    db.close()


async def seed_quart_app_postgres(url: str, count: int, hasher: PasswordHasher) -> None:
    """Insert count users into quart_app's `users` table on PostgreSQL (COPY)."""
    password_hash = hasher.hash(SEED_PASSWORD)
    created_at = datetime.now(UTC)
    connection = await asyncpg.connect(_dsn(url))
    try:
        present = {
            record["column_name"]
            for record in await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
            )
        }
        extra = [column for column in OPTIONAL_COLUMNS if column in present]
        await connection.copy_records_to_table(
            "users",
            records=[
                (*row, created_at, *(OPTIONAL_COLUMNS[c] for c in extra))
                for row in _quart_app_rows(count, password_hash)
            ],
            columns=[*USER_COLUMNS, *extra],
        )
    finally:
        await connection.close()


def init_flask_original(python: Path, env: Mapping[str, str], log: Path) -> None:
    """Let the Flask original create its tables, as its create_app does on start."""
    with log.open("ab") as output:
        subprocess.run(  # noqa: S603  (fixed argv, no shell)
            [str(python), "-c", "from flask_original import create_app; create_app()"],
            cwd=BENCH,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=MIGRATE_TIMEOUT,
        )


def seed_flask_original(path: Path, count: int) -> None:
    """Insert count users, with werkzeug's default hash, into the Flask original's table."""
    password_hash = generate_password_hash(SEED_PASSWORD)
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO users (username, password_hash) VALUES (?, ?)",
            ((username(number), password_hash) for number in range(count)),
        )
    db.close()


PEER_DOMAIN = "example.com"  # FastAPI-Users logs in by email: the username @ this


def peer_password_hash(python: Path) -> str:
    """The seed password hashed by FastAPI-Users' own PasswordHelper, in its virtualenv."""
    code = (
        "from fastapi_users.password import PasswordHelper; "
        f"print(PasswordHelper().hash({SEED_PASSWORD!r}))"
    )
    done = subprocess.run(  # noqa: S603  (fixed argv, no shell)
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip().splitlines()[-1]


def argon2_of_hash(encoded: str) -> PasswordHasher:
    """An argon2id hasher with the parameters an encoded hash was made with."""
    params = dict(item.split("=") for item in encoded.split("$")[3].split(","))
    return PasswordHasher(
        time_cost=int(params["t"]),
        memory_cost=int(params["m"]),
        parallelism=int(params["p"]),
        type=Type.ID,
    )


def init_peer(python: Path, env: Mapping[str, str], log: Path) -> None:
    """Let FastAPI-Users' SQLAlchemy models create their tables."""
    code = "import asyncio; from fastapi_users_peer.app import create_tables as c; asyncio.run(c())"
    with log.open("ab") as output:
        subprocess.run(  # noqa: S603  (fixed argv, no shell)
            [str(python), "-c", code],
            cwd=BENCH,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=MIGRATE_TIMEOUT,
        )


def seed_peer(path: Path, count: int, password_hash: str) -> None:
    """Insert count users into FastAPI-Users' `user` table (its UUIDs are text on SQLite)."""
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO user (id, email, hashed_password, is_active, is_superuser, is_verified)"
            " VALUES (?, ?, ?, 1, 0, 0)",
            (
                (str(uuid.uuid4()), f"{username(number)}@{PEER_DOMAIN}", password_hash)
                for number in range(count)
            ),
        )
    db.close()


def _dsn(url: str) -> str:
    """asyncpg's form of a Tortoise URL (postgres:// and its query options dropped)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


def bench_database(server_url: str) -> str:
    """The benchmark's own database: the one server_url names, unless that is `postgres`."""
    name = urlsplit(server_url).path.strip("/")
    return name if name and name != "postgres" else BENCH_DATABASE


def bench_database_url(server_url: str) -> str:
    """The URL of the benchmark's own database on the server that server_url names."""
    parts = urlsplit(server_url)
    return urlunsplit(("postgres", parts.netloc, f"/{bench_database(server_url)}", "", ""))


async def recreate_database(server_url: str, *, drop_only: bool = False) -> None:
    """Drop the benchmark database on that server, then (unless drop_only) create it empty."""
    parts = urlsplit(server_url)
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    name = bench_database(server_url)
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
