"""A database outage: requests fail closed with 503, and the app recovers by itself.

A throwaway PostgreSQL cluster of the test's own is stopped and started again, so the
shared server is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from quart import Quart

from quart_app import create_app
from quart_app.models import User

from .conftest import PASSWORD, USE_POSTGRES, AuthActions, base_config, require

# In the PostgreSQL pass of the suite only: Tortoise keeps one SQL dialect per process.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not USE_POSTGRES, reason="runs in the PostgreSQL pass"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A private PostgreSQL in a temporary directory, run as the postgres system user."""

    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        require(bool(bins) and shutil.which("runuser") is not None, "no PostgreSQL binaries")
        self.bin = Path(bins[-1])
        self.data = root / "pgdata"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(root, user="postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            *("-D", str(self.data), "-l", str(self.data.parent / "server.log")),
            *("-o", options, "-w", "-t", "30", "start"),
        )

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
        )

    def _as_postgres(self, *command: str) -> None:
        user = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        subprocess.run([*user, *command], check=True, capture_output=True, timeout=60)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Not under pytest's tmp_path: the postgres user must be able to reach the directory.
    with tempfile.TemporaryDirectory(prefix="quart_app_pg_") as root:
        cluster = Cluster(Path(root))
        cluster.start()
        yield cluster
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()


@pytest.fixture
async def outage_app(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Quart]:
    app = create_app(base_config(DATABASE_URL=cluster.url))
    app.instance_path = str(tmp_path / "instance")
    async with app.test_app():
        yield app


async def test_outage_fails_closed_and_recovers(outage_app: Quart, cluster: Cluster) -> None:
    client = outage_app.test_client()
    auth = AuthActions(client)
    assert (await auth.register("alice")).status_code in (302, 303)
    assert (await client.get("/index/")).status_code == 200
    assert (await client.get("/healthz")).status_code == 200

    cluster.stop()
    page = await client.get("/index/")
    assert page.status_code == 503  # not a login page, not the index: nobody is let in
    body = await page.get_data(as_text=True)
    assert "Traceback" not in body
    assert "asyncpg" not in body
    api = await client.get("/api/me")
    assert api.status_code == 503
    assert (await api.get_json())["error"] == "service_unavailable"
    assert (await client.get("/healthz")).status_code == 503
    other = AuthActions(outage_app.test_client())
    token = await other.token("/register/")
    refused = await other.client.post(
        "/register/",
        form={
            "username": "bob",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": token,
        },
    )
    assert refused.status_code == 503

    cluster.start()
    assert (await client.get("/healthz")).status_code == 200
    page = await client.get("/index/")
    assert page.status_code == 200  # the same session, no restart
    assert "alice" in await page.get_data(as_text=True)
    assert (await other.register("bob")).status_code in (302, 303)
    assert await User.filter(username="bob").count() == 1
