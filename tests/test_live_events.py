"""A session ended on one worker reaches its open socket on another, with no Redis.

Real Hypercorn, 2 and 4 workers, SQLite (the workers share the ring in the instance folder)
and PostgreSQL (LISTEN/NOTIFY). Each try opens a fresh session's /ws/session socket, then
finds a connection answered by another worker than the socket's (Hypercorn's access log
names the worker of each request, tagged by its Referer) and ends the session from there.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from .conftest import PASSWORD, POSTGRES_URL, USE_POSTGRES, require
from .live_server import (
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
    private_postgres_database,
)

pytestmark = pytest.mark.server

TRIES = 50
# The promise: a page hears of the end of its session within 2 s.
LIVE_LOGOUT_S = 2.0
USERNAME = "events.user"
# Hypercorn's access log: the worker's pid ... "referer" "user agent".
LINE = r'\[(\d+)\] \[INFO\] \S+ - - \[[^\]]+\] "[A-Z]+ [^"]*" \d+ \S+ "{tag}"'
SOCKET_LINE = r'\[(\d+)\] \[INFO\] \S+ - - \[[^\]]+\] "GET /ws/session 1\.1" 101 \S+ "[^"]*" "{ua}"'


def worker_of(server: LiveServer, pattern: str) -> str:
    """The pid of the worker whose access log line matches; waits for it to be written."""
    deadline = time.monotonic() + 5
    while not (match := re.search(pattern, server.output())):
        assert time.monotonic() < deadline, f"no log line for {pattern}:\n{server.output()}"
        time.sleep(0.02)
    return match.group(1)


@contextmanager
def registered(server: LiveServer) -> Iterator[httpx.Client]:
    """The owner of the account, logged in; the server runs in its own processes."""
    with httpx.Client(base_url=server.url, headers={"User-Agent": "events-owner"}) as owner:
        body = {"username": USERNAME, "password": PASSWORD}
        assert owner.post("/api/register", json=body).status_code == 201
        yield owner


def logged_in(server: LiveServer, agent: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, headers={"User-Agent": agent}, timeout=10)
    response = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return client


def on_another_worker(
    server: LiveServer, agent: str, cookies: httpx.Cookies, pid: str
) -> httpx.Client:
    """A client (one kept-alive connection) that a worker other than pid answers."""
    for attempt in range(40):
        client = httpx.Client(
            base_url=server.url, headers={"User-Agent": agent}, cookies=cookies, timeout=10
        )
        tag = f"probe-{time.monotonic_ns()}-{attempt}"
        assert client.get("/healthz", headers={"Referer": tag}).status_code == 200
        if worker_of(server, LINE.format(tag=re.escape(tag))) != pid:
            return client
        client.close()
    pytest.fail(f"40 connections in a row went to worker {pid}:\n{server.output()}")


async def end_elsewhere_and_listen(server: LiveServer, owner: httpx.Client, n: int) -> str | None:
    """Open session n's socket, end the session from another worker; what the socket heard."""
    agent = f"events-try-{n}"
    device = logged_in(server, agent)
    listing = device.get("/api/sessions").json()["sessions"]
    session_id = next(s["id"] for s in listing if s["current"])
    cookie = "; ".join(f"{c.name}={c.value}" for c in device.cookies.jar)
    uri = server.url.replace("http://", "ws://") + "/ws/session"
    async with connect(
        uri,
        additional_headers={"Cookie": cookie},
        user_agent_header=agent,
        origin=server.url,  # type: ignore[arg-type]
    ) as socket:
        pid = worker_of(server, SOCKET_LINE.format(ua=re.escape(agent)))
        ender = on_another_worker(server, "events-owner", owner.cookies, pid)
        try:
            assert ender.delete(f"/api/sessions/{session_id}").status_code == 204
        finally:
            ender.close()
            device.close()
        try:
            message = await asyncio.wait_for(socket.recv(), LIVE_LOGOUT_S)
        except TimeoutError:
            return None
    return str(json.loads(message)["reason"])


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'db.sqlite3'}"
        return
    if not USE_POSTGRES:
        pytest.skip("runs in the PostgreSQL pass")
    require(POSTGRES_URL is not None, "QUART_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    with private_postgres_database(POSTGRES_URL) as url:
        yield url


@pytest.mark.parametrize(
    ("database", "workers"),
    [("sqlite", 2), ("sqlite", 4), ("postgres", 2)],
    indirect=["database"],
)
async def test_every_end_reaches_the_socket_on_another_worker(
    live_servers: LiveServers, database: str, workers: int
) -> None:
    server = live_servers.start(
        database_url=database, workers=workers, env={"QUART_REDIS_URL": None}
    )
    with registered(server) as owner:
        heard = [await end_elsewhere_and_listen(server, owner, n) for n in range(TRIES)]
    missed = [n for n, reason in enumerate(heard) if reason != "ended_elsewhere"]
    assert not missed, f"{len(missed)} of {TRIES} sockets heard nothing: tries {missed}"
