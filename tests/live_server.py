"""A real Hypercorn in a subprocess, for the tests that need the app as it is served.

Use it as a context manager::

    with live_server(tmp_path) as server:
        httpx.get(server.url + "/login/")

or, in a test module, import the `live_servers` fixture (a factory that stops every server it
started when the test ends) under its function's name, so that linters see no shadowing::

    from .live_server import live_servers_fixture  # noqa: F401  (the live_servers fixture)

Each server gets a free port, an instance folder of its own (so the development secret is
created there, not in the project) and, unless told otherwise, a SQLite file beside it.
Every wait is bounded; a server that does not come up fails the test with its own output.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
HYPERCORN = Path(sys.executable).parent / "hypercorn"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# What the server is asked while it starts: any HTTP answer means a worker is serving.
PROBE_PATH = "/login/"
# Printed by each worker once its startup hooks have run and it accepts connections.
READY = re.compile(r"^\[[^]]*\] \[(\d+)\] \[INFO\] Running on ", re.MULTILINE)
# The workers of the project's hypercorn.toml, and Hypercorn's own default.
CONFIG_WORKERS = 2
DEFAULT_WORKERS = 1
# Printed when a worker's startup hooks raise. Such a worker may never exit (an open SQLite
# connection's thread keeps it alive), so waiting for the process would take the whole bound.
STARTUP_FAILED = "LifespanFailureError"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody was listening on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(
    instance_path: Path, database_url: str, overrides: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """This process's environment with only our QUART_* settings; None in overrides unsets."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("QUART_")}
    env.update(
        {
            "QUART_INSTANCE_PATH": str(instance_path),
            "QUART_DATABASE_URL": database_url,
            "QUART_RATE_LIMITER_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass
class LiveServer:
    """One Hypercorn master process (and its workers), in a process group of its own."""

    process: subprocess.Popen[bytes]
    port: int
    instance_path: Path
    database_url: str
    log_path: Path
    workers: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the server printed so far (access log, errors, tracebacks)."""
        return self.log_path.read_text(errors="replace")

    def ready_workers(self) -> set[str]:
        """The process ids of the workers that said they are serving."""
        return set(READY.findall(self.output()))

    def wait_until_serving(self, timeout: float = START_TIMEOUT) -> None:
        """Return once every worker is serving and HTTP is answered; fail otherwise.

        The master binds the socket before its workers start, so a mere connect proves
        nothing; and the first worker up answers everything until the others are, so a
        test about several workers would see only one.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"hypercorn exited with status {self.process.returncode} before serving:\n"
                    + self.output()
                )
            if STARTUP_FAILED in self.output():
                pytest.fail(f"a hypercorn worker failed to start:\n{self.output()}")
            if len(self.ready_workers()) < self.workers:
                time.sleep(0.1)
                continue
            try:
                httpx.get(self.url + PROBE_PATH, timeout=2.0)
            except httpx.TransportError:
                time.sleep(0.1)
            else:
                return
        pytest.fail(
            f"hypercorn did not serve on {self.url} with {self.workers} workers within"
            f" {timeout} s:\n{self.output()}"
        )

    def wait_for_exit(self, timeout: float) -> int | None:
        """The exit status, or None when the process is still running after timeout."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Stop the server and its workers; return the master's exit status.

        SIGTERM goes to the master alone: it tells its workers to finish their requests and
        waits for them (the workers themselves would die at once on SIGTERM). Whatever is
        left of the process group after the bound is killed.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.wait_for_exit(timeout)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout)


def launch(
    directory: Path,
    *,
    instance_path: Path | None = None,
    database_url: str | None = None,
    env: Mapping[str, str | None] | None = None,
    config: bool = True,
    port: int | None = None,
    workers: int | None = None,
    args: Sequence[str] = (),
) -> LiveServer:
    """Start Hypercorn for quart_app:app without waiting for it; directory holds its files.

    With config, the project's hypercorn.toml (2 workers) is used and --bind overrides its
    address, as the README says; without, Hypercorn runs on its own defaults.
    """
    directory.mkdir(parents=True, exist_ok=True)
    instance_path = instance_path or directory / "instance"
    database_url = database_url or f"sqlite://{directory / 'db.sqlite3'}"
    port = port or free_port()
    command = [str(HYPERCORN)]
    if config:
        command += ["--config", str(ROOT / "hypercorn.toml")]
    if workers is not None:
        command += ["--workers", str(workers)]
    # The access log names the worker of each request, which the live tests read.
    command += ["--access-logfile", "-"]
    # Hypercorn 0.18 keeps a closed WebSocket's connection until its ping task wakes (it
    # sleeps the whole interval before it looks), and a stop waits for that connection up to
    # graceful_timeout: 5 s after every browser test with the 20 s of hypercorn.toml.
    command += ["--websocket-ping-interval", "1"]
    command += args  # after --config: the command line wins over the file
    command += ["--bind", f"127.0.0.1:{port}", "quart_app:app"]
    log_path = directory / f"hypercorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(instance_path, database_url, env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the workers
        )
    if workers is None:
        workers = CONFIG_WORKERS if config else DEFAULT_WORKERS
    return LiveServer(process, port, instance_path, database_url, log_path, workers)


@contextmanager
def live_server(
    directory: Path,
    *,
    instance_path: Path | None = None,
    database_url: str | None = None,
    env: Mapping[str, str | None] | None = None,
    config: bool = True,
) -> Iterator[LiveServer]:
    """A serving Hypercorn for the length of the with block."""
    server = launch(
        directory, instance_path=instance_path, database_url=database_url, env=env, config=config
    )
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


@dataclass
class LiveServers:
    """Start servers during a test; every one of them is stopped when the test ends."""

    directory: Path
    started: list[LiveServer] = field(default_factory=list)

    def launch(
        self,
        *,
        instance_path: Path | None = None,
        database_url: str | None = None,
        env: Mapping[str, str | None] | None = None,
        config: bool = True,
        workers: int | None = None,
        args: Sequence[str] = (),
    ) -> LiveServer:
        """Start a server without waiting; by default all share one instance folder and DB."""
        server = launch(
            self.directory,
            instance_path=instance_path,
            database_url=database_url,
            env=env,
            config=config,
            workers=workers,
            args=args,
        )
        self.started.append(server)
        return server

    def start(
        self,
        *,
        instance_path: Path | None = None,
        database_url: str | None = None,
        env: Mapping[str, str | None] | None = None,
        config: bool = True,
        workers: int | None = None,
        args: Sequence[str] = (),
    ) -> LiveServer:
        """Start a server and wait until it answers."""
        server = self.launch(
            instance_path=instance_path,
            database_url=database_url,
            env=env,
            config=config,
            workers=workers,
            args=args,
        )
        server.wait_until_serving()
        return server

    def stop_all(self) -> None:
        try:
            for server in reversed(self.started):
                server.stop()
        finally:
            # A server that could not be reaped must not spare the others their SIGKILL.
            for server in self.started:
                if server.process.poll() is None:
                    with suppress(ProcessLookupError):
                        os.killpg(server.process.pid, signal.SIGKILL)


@pytest.fixture(name="live_servers")
def live_servers_fixture(tmp_path: Path) -> Iterator[LiveServers]:
    """A factory of live servers whose files live in tmp_path."""
    servers = LiveServers(tmp_path)
    try:
        yield servers
    finally:
        servers.stop_all()


@contextmanager
def private_postgres_database(url: str) -> Iterator[str]:
    """A PostgreSQL database of the test's own beside url's, dropped afterwards.

    Not the suite's own database: the in-process tests truncate that one.
    """
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')[:40]}_live_{secrets.token_hex(4)}"
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    try:
        asyncio.run(postgres_execute(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        require(False, f"PostgreSQL at {parts.netloc} is unreachable: {error!r}")
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        asyncio.run(postgres_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def postgres_execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement, timeout=30)
    finally:
        await connection.close(timeout=10)
