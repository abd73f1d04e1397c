"""A production-shaped deployment: Hypercorn with 4 workers on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from .conftest import PASSWORD, POSTGRES_URL, REDIS_URL, USE_POSTGRES, require
from .live_server import (
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
    private_postgres_database,
)

# Run once, in the PostgreSQL pass of the suite.
pytestmark = [
    pytest.mark.server,
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="runs in the PostgreSQL pass"),
]

WORKERS = 4
ACCOUNT_FAILURES = 5


@pytest.fixture
def database() -> Iterator[str]:
    require(POSTGRES_URL is not None, "QUART_TEST_POSTGRES_URL is not set")
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    assert POSTGRES_URL is not None
    with private_postgres_database(POSTGRES_URL) as url:
        yield url


def production_env(**extra: str) -> dict[str, str | None]:
    assert REDIS_URL is not None
    return {
        "QUART_SECRET_KEY": secrets.token_urlsafe(32),
        "QUART_REDIS_URL": REDIS_URL,
        "QUART_RATE_LIMITER_ENABLED": "true",
        "QUART_LOGIN_FAILURES_PER_ACCOUNT": f"{ACCOUNT_FAILURES}/15 minutes",
        "QUART_LOGIN_ATTEMPTS_PER_ADDRESS": "10000/minute",
        "QUART_REGISTRATIONS_PER_ADDRESS": "10000/hour",
        **extra,
    }


@pytest.fixture
def server(database: str, live_servers: LiveServers) -> Iterator[LiveServer]:
    server = live_servers.start(database_url=database, workers=WORKERS, env=production_env())
    yield server
    server.stop()  # before the database is dropped


def at_once(server: LiveServer, count: int, send: Any) -> list[httpx.Response]:
    """count requests, each on its own connection, as many at once as threads allow."""

    def one(index: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            return send(http, index)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def session_addresses(database: str, username: str) -> list[str]:
    """The client addresses recorded for username's sessions."""
    rows = fetch(
        database,
        "SELECT s.ip FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1",
        username,
    )
    return [row["ip"] for row in rows]


def workers_that_answered(server: LiveServer, path: str) -> set[str]:
    return {
        line.split("]")[1].strip(" [")
        for line in server.output().splitlines()
        if f'"POST {path} 1.1"' in line
    }


def test_same_name_race_across_workers(server: LiveServer, database: str) -> None:
    name = f"racer_{secrets.token_hex(3)}"
    responses = at_once(
        server,
        50,
        lambda http, _: http.post("/api/register", json={"username": name, "password": PASSWORD}),
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49, server.output()[-3000:]
    assert all(r.json()["error"] == "username_taken" for r in responses if r.status_code == 409)
    rows = fetch(database, "SELECT username FROM users WHERE username_key = $1", name)
    assert [row["username"] for row in rows] == [name]
    assert len(workers_that_answered(server, "/api/register")) >= 2


def test_account_throttle_holds_across_workers(server: LiveServer) -> None:
    name = f"target_{secrets.token_hex(3)}"
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        assert http.post("/api/register", json={"username": name, "password": PASSWORD}).is_success
    responses = at_once(
        server,
        30,
        lambda http, i: http.post(
            "/api/login", json={"username": name, "password": f"wrong guess {i}"}
        ),
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == ACCOUNT_FAILURES, statuses
    assert statuses.count(429) == 30 - ACCOUNT_FAILURES, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
    assert len(workers_that_answered(server, "/api/login")) >= 2
    # The right password waits too, and an unknown name is answered the same way.
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        right = http.post("/api/login", json={"username": name, "password": PASSWORD})
        assert right.status_code == 429
        unknown = f"ghost_{secrets.token_hex(3)}"
        tries = [
            http.post("/api/login", json={"username": unknown, "password": "x" * 9}).status_code
            for _ in range(ACCOUNT_FAILURES + 1)
        ]
    assert tries == [401] * ACCOUNT_FAILURES + [429]


def test_spoofed_forwarded_for_is_ignored(server: LiveServer, database: str) -> None:
    name = f"spoof_{secrets.token_hex(3)}"
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        response = http.post(
            "/api/register",
            json={"username": name, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    assert response.status_code == 201
    assert session_addresses(database, name) == ["127.0.0.1"]


def test_trusted_proxy_address_is_used(
    database: str, live_servers: LiveServers, tmp_path: Path
) -> None:
    server = live_servers.start(
        database_url=database, env=production_env(QUART_TRUSTED_PROXIES="1")
    )
    name = f"proxied_{secrets.token_hex(3)}"
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        response = http.post(
            "/api/register",
            json={"username": name, "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
        )
    assert response.status_code == 201
    server.stop()
    # One trusted proxy: only the address it appended is believed, not the client's claim.
    assert session_addresses(database, name) == ["203.0.113.9"]


def test_healthz_answers_on_every_worker(server: LiveServer) -> None:
    responses = at_once(server, 16, lambda http, _: http.get("/healthz"))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["status"] for r in responses} == {"ok"}
