"""The app as Hypercorn serves it: two workers, restarts, logout, headers, refusing to start."""

from __future__ import annotations

import asyncio
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from .conftest import PASSWORD, POSTGRES_URL, REDIS_URL, USE_POSTGRES, csrf_token, require
from .live_server import (
    HYPERCORN,
    ROOT,
    LiveServer,
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
    private_postgres_database,
    server_env,
)

QUART = HYPERCORN.parent / "quart"

pytestmark = pytest.mark.server

USERNAME = "Ada.Lovelace"
AUTH_COOKIE = "quart_app_auth"
# Hypercorn's access log: "[time] [pid] [INFO] client - - [time] "GET /index/ 1.1" 200 ...".
ACCESS_LINE = re.compile(r'\[(\d+)\] \[INFO\] \S+ - - \[[^\]]+\] "GET /index/ 1\.1" 200 ')
REFUSED_LINE = re.compile(r'\[(\d+)\] \[INFO\] \S+ - - \[[^\]]+\] "GET /index/ 1\.1" 302 ')
# The SQLite run checks SQLite; the PostgreSQL run of the suite checks both.
BACKENDS = ["sqlite", "postgres"] if USE_POSTGRES else ["sqlite"]


def client(server: LiveServer, cookies: Mapping[str, str] | None = None) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects, so each one is checked."""
    return httpx.Client(base_url=server.url, cookies=dict(cookies or {}), timeout=10.0)


def cookie_values(http: httpx.Client) -> dict[str, str]:
    return {cookie.name: cookie.value for cookie in http.cookies.jar if cookie.value is not None}


def register(http: httpx.Client, username: str = USERNAME) -> None:
    """Register through the real form, as a browser would."""
    page = http.get("/register/")
    assert page.status_code == 200
    response = http.post(
        "/register/",
        data={
            "username": username,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": csrf_token(page.text),
        },
    )
    assert response.status_code in (302, 303), response.text
    assert response.headers["Location"] == "/index/"
    assert AUTH_COOKIE in cookie_values(http)


def index_on_new_connections(server: LiveServer, cookies: Mapping[str, str], count: int) -> None:
    """GET /index/ count times, each on its own connection and some at once, all logged in."""

    def fetch(_: int) -> httpx.Response:
        with client(server, cookies) as http:
            return http.get("/index/")

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(fetch, range(count)))
    assert [r.status_code for r in responses] == [200] * count
    assert all(f'class="username">{USERNAME}<' in r.text for r in responses)


def answering_pids(server: LiveServer) -> set[str]:
    """The processes that logged a 200 for /index/."""
    return set(ACCESS_LINE.findall(server.output()))


def held_by_both_workers(server: LiveServer, cookies: Mapping[str, str]) -> None:
    """Make both workers serve the login, so that each keeps the session in memory."""
    index_on_new_connections(server, cookies, 40)
    assert len(answering_pids(server)) == 2, server.output()


def refused_by_both_workers(server: LiveServer, cookies: Mapping[str, str]) -> None:
    """The old cookie, replayed on 20 new connections, is refused, and by both workers."""
    since = len(server.output())
    for _ in range(20):
        # A fresh client each time: the server's answer may try to clear the cookie.
        with client(server, cookies) as replay:
            response = replay.get("/index/")
        assert redirects_to_login(response), (response.status_code, response.text[:200])
    # Accept is random between workers; twenty all landing on one is ~1 in 500,000.
    # Hypercorn logs a request after answering it: wait a little for the last lines.
    deadline = time.monotonic() + 5
    while len(pids := set(REFUSED_LINE.findall(server.output()[since:]))) < 2:
        assert time.monotonic() < deadline, f"refused by {pids} only:\n{server.output()}"
        time.sleep(0.05)


def redirects_to_login(response: httpx.Response) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"].startswith("/login/")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for the servers of one test: a SQLite file, or a PostgreSQL of its own."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'db.sqlite3'}"
        return
    require(POSTGRES_URL is not None, "QUART_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    with private_postgres_database(POSTGRES_URL) as url:
        yield url


def test_workers_and_restarts_share_the_login(
    database_url: str, live_servers: LiveServers, tmp_path: Path
) -> None:
    instance = tmp_path / "shared-instance"
    server = live_servers.start(instance_path=instance, database_url=database_url)
    with client(server) as http:
        register(http)
        cookies = cookie_values(http)

    index_on_new_connections(server, cookies, 40)
    pids = answering_pids(server)
    assert len(pids) == 2, f"expected both workers to answer, got {pids}:\n{server.output()}"

    assert server.stop() == 0, server.output()
    secret_key = instance / "secret_key"
    assert secret_key.is_file()
    assert stat.S_IMODE(secret_key.stat().st_mode) == 0o600
    key = secret_key.read_bytes()

    restarted = live_servers.start(instance_path=instance, database_url=database_url)
    index_on_new_connections(restarted, cookies, 10)
    assert secret_key.read_bytes() == key


@pytest.mark.parametrize("events", ["machine", "redis"])
def test_logout_ends_the_session_everywhere(
    database_url: str, live_servers: LiveServers, events: str
) -> None:
    env = {"QUART_SESSION_CACHE_SIZE": "100"}  # on PostgreSQL too, where it is off by default
    if events == "redis":
        require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
        assert REDIS_URL is not None
        env["QUART_REDIS_URL"] = REDIS_URL
    server = live_servers.start(database_url=database_url, env=env)
    with client(server) as http:
        register(http)
        before_logout = cookie_values(http)
        # The replay below is a real check only if a replayed cookie works before logout.
        held_by_both_workers(server, before_logout)

        token = csrf_token(http.get("/logout/").text)
        response = http.post("/logout/", data={"csrf_token": token})
        assert response.status_code in (302, 303)
        assert response.headers["Location"] == "/login/"
        assert "You have been logged out." in http.get("/login/").text
        assert redirects_to_login(http.get("/index/"))
    refused_by_both_workers(server, before_logout)


def test_disabling_from_the_command_line_logs_out_on_every_worker(
    live_servers: LiveServers, tmp_path: Path
) -> None:
    """`users disable` runs in a process of its own; the workers hold the session in memory."""
    database_url = f"sqlite://{tmp_path / 'db.sqlite3'}"
    server = live_servers.start(database_url=database_url)
    with client(server) as http:
        register(http)
        cookies = cookie_values(http)
    held_by_both_workers(server, cookies)

    command = subprocess.run(
        [str(QUART), "--app", "quart_app", "users", "disable", USERNAME],
        cwd=ROOT,
        env=server_env(server.instance_path, database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert command.returncode == 0, command.stderr
    refused_by_both_workers(server, cookies)


def test_headers_no_server_banner_and_nosniff(live_servers: LiveServers) -> None:
    server = live_servers.start()
    with client(server) as http:
        token = csrf_token(http.get("/login/").text)
        responses = [
            http.get("/"),
            http.get("/login/"),
            http.get("/register/"),
            http.get("/index/"),
            http.get("/static/style.css"),
            http.get("/no-such-page/"),
            http.post("/login/", data={"username": "x", "password": "y"}),
            http.post("/login/", data={"username": "x", "password": "y", "csrf_token": token}),
        ]
    assert [r.status_code for r in responses] == [302, 200, 200, 302, 200, 404, 400, 401]
    for response in responses:
        assert "server" not in response.headers, (response.url, response.headers)
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.url


def test_serves_without_the_config_file(live_servers: LiveServers) -> None:
    server = live_servers.start(config=False)
    with client(server) as http:
        register(http, "NoConfig")
        page = http.get("/index/")
    assert page.status_code == 200
    assert 'class="username">NoConfig<' in page.text
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_production_without_secret_key_refuses_to_start(live_servers: LiveServers) -> None:
    server = live_servers.launch(env={"QUART_ENV": "production", "QUART_SECRET_KEY": None})
    answers: list[int] = []
    deadline = time.monotonic() + 30
    while server.process.poll() is None and time.monotonic() < deadline:
        try:
            answers.append(httpx.get(server.url + "/login/", timeout=1.0).status_code)
        except httpx.TransportError:
            time.sleep(0.1)
    status = server.wait_for_exit(timeout=1)
    output = server.output()

    assert answers == [], f"served {answers} without a secret key"
    assert status is not None, f"still running after 30 s:\n{output}"
    assert "QUART_SECRET_KEY" in output
    assert not (server.instance_path / "secret_key").exists()
    assert status != 0, f"hypercorn exited with status {status}; its output ends:\n{output[-1500:]}"


def test_production_with_secret_key_serves(live_servers: LiveServers) -> None:
    # The control for the test above: production itself starts, given its secret.
    key = secrets.token_urlsafe(48)
    server = live_servers.start(env={"QUART_ENV": "production", "QUART_SECRET_KEY": key})
    response = httpx.get(server.url + "/login/", timeout=10.0)
    assert response.status_code == 200
    assert "Strict-Transport-Security" in response.headers
    assert "__Host-quart_app_session=" in response.headers["Set-Cookie"]
    assert not (server.instance_path / "secret_key").exists()


async def test_a_stop_with_sockets_open_leaves_no_task_behind(
    database_url: str, live_servers: LiveServers
) -> None:
    """SIGTERM while pages hold /ws/session: every worker ends its tasks before it exits."""
    server = live_servers.start(database_url=database_url)
    with client(server) as http:
        register(http)
        cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies.jar)
        agent = http.headers["User-Agent"]  # the session is bound to it
    uri = server.url.replace("http://", "ws://") + "/ws/session"
    async with AsyncExitStack() as stack:
        for _ in range(6):  # so that both workers hold some, whichever accepts them
            await stack.enter_async_context(
                connect(
                    uri,
                    additional_headers={"Cookie": cookie},
                    user_agent_header=agent,
                    origin=server.url,  # type: ignore[arg-type]
                )
            )
        assert await asyncio.to_thread(server.stop) == 0, server.output()
    output = server.output()
    assert output.count('"GET /ws/session 1.1" 101') == 6, output
    assert "Task was destroyed" not in output, output
    # Python before 3.11.8 logs one more traceback for each connection Hypercorn cancels at
    # shutdown (CPython gh-113538, fixed since): that one, and no other, is allowed.
    cpython_noise = output.count("exc = task.exception()")
    assert output.count("Traceback") == cpython_noise, output


async def test_a_silent_connection_is_closed_and_an_idle_socket_is_kept(
    live_servers: LiveServers,
) -> None:
    """hypercorn.toml's read_timeout, shortened here: pings keep an idle /ws/session open."""
    server = live_servers.start(args=["--read-timeout", "2", "--websocket-ping-interval", "1"])
    with client(server) as http:
        register(http)
        cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies.jar)
        agent = http.headers["User-Agent"]
    uri = server.url.replace("http://", "ws://") + "/ws/session"
    async with connect(
        uri,
        additional_headers={"Cookie": cookie},
        user_agent_header=agent,
        origin=server.url,  # type: ignore[arg-type]
    ) as socket:
        # Half a request, then nothing: the server hangs up; the bound only stops a hang.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        # The socket, as idle as that connection and for longer, still answers.
        await (await socket.ping())
        assert socket.state.name == "OPEN"
