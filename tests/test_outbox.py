"""The outbox under real Hypercorn workers: a mail server down, then up; each mail once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from .conftest import PASSWORD, POSTGRES_URL, USE_POSTGRES, require
from .live_server import (
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
    private_postgres_database,
)
from .smtp_server import SmtpServer, link_in, smtp_fixture  # noqa: F401

pytestmark = pytest.mark.server
USERS = 6


QUERY = "SELECT status, attempts, last_error FROM outbox"


def outbox_rows(database: str) -> list[tuple[str, int, str | None]]:
    """The outbox as the servers left it, read behind their back."""
    if database.startswith("sqlite://"):
        with closing(sqlite3.connect(database.removeprefix("sqlite://"))) as connection:
            rows = connection.execute(QUERY).fetchall()
    else:
        rows = asyncio.run(_postgres_rows(database))
    return [(str(status), int(attempts), error) for status, attempts, error in rows]


async def _postgres_rows(url: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        return [tuple(row) for row in await connection.fetch(QUERY)]
    finally:
        await connection.close()


@pytest.fixture(name="database")
def database_fixture(tmp_path: Path) -> Iterator[str]:
    """SQLite beside the servers, or, on the PostgreSQL pass, a private database."""
    if not USE_POSTGRES:
        yield f"sqlite://{tmp_path / 'shared.sqlite3'}"
        return
    require(POSTGRES_URL is not None, "QUART_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    with private_postgres_database(POSTGRES_URL) as url:
        yield url


def wait_until(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    pytest.fail("the condition was not met in time")


@pytest.mark.parametrize("workers", [2, 4])
def test_no_mail_lost_or_doubled_while_the_server_is_down(
    live_servers: LiveServers, smtp: SmtpServer, database: str, workers: int
) -> None:
    server = live_servers.start(
        workers=workers,
        database_url=database,
        env={
            "QUART_MAIL_URL": smtp.url,
            "QUART_MAIL_POLL_INTERVAL": "0.2",
            "QUART_MAIL_RETRY_BASE": "0.2",
            "QUART_MAIL_RETRY_MAX": "0.5",
            "QUART_MAIL_MAX_ATTEMPTS": "1000",
        },
    )
    addresses = [f"user{n}@example.com" for n in range(USERS)]
    for n, address in enumerate(addresses):
        with httpx.Client(base_url=server.url) as client:
            body = {"username": f"user{n}", "password": PASSWORD, "email": address}
            assert client.post("/api/register", json=body).status_code == 201
    for address in addresses:
        (verify,) = smtp.inbox.wait_for(address)
        response = httpx.get(server.url + urlsplit(link_in(verify)).path)
        assert response.status_code == 302

    smtp.stop()
    for n in range(USERS):
        # A new connection each time, so the requests spread over the workers.
        response = httpx.post(server.url + "/api/password-reset", json={"identifier": f"user{n}"})
        assert response.status_code == 202
    wait_until(lambda: sum(1 for _, _, error in outbox_rows(database) if error) >= USERS)
    assert all(status != "sent" for status, _, error in outbox_rows(database) if error)

    smtp.start()
    wait_until(lambda: all(status == "sent" for status, _, _ in outbox_rows(database)))
    for address in addresses:
        mails = smtp.inbox.to(address)
        assert [m["Subject"] for m in mails] == [
            "Confirm your email address",
            "Reset your password",
        ]
    assert len(smtp.inbox.messages) == 2 * USERS
    assert "Task was destroyed" not in server.output()
    assert server.stop() == 0
    assert "Task was destroyed" not in server.output()


def test_mail_status_shows_what_waits_and_what_failed(tmp_path: Path) -> None:
    database = tmp_path / "status.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QUART_")},
        "QUART_DATABASE_URL": f"sqlite://{database}",
        "QUART_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    quart = [str(Path(sys.executable).parent / "quart"), "--app", "quart_app"]
    subprocess.run([*quart, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    with closing(sqlite3.connect(database)) as connection:
        connection.executemany(
            "INSERT INTO outbox (recipient, template, subject, message, status, attempts, due_at,"
            " last_error, created_at) VALUES (?, ?, 'S', '', ?, ?, 0, ?, '2026-01-01')",
            [
                ("a@example.com", "password_reset", "queued", 1, "ConnectionRefusedError"),
                ("b@example.com", "verify_email", "failed", 16, "SMTPRecipientsRefused"),
                ("c@example.com", "verify_email", "sent", 1, None),
            ],
        )
        connection.commit()
    result = subprocess.run(
        [*quart, "mail", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "queued: 1, sending: 0, failed: 1, sent: 1" in result.stdout
    assert "a@example.com" in result.stdout
    assert "SMTPRecipientsRefused" in result.stdout
    assert "c@example.com" not in result.stdout
