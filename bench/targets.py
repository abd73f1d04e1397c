"""The targets: their databases made and seeded, their servers started, watched and stopped."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from . import databases as dbs
from .load import FLOW_CLIENTS, Visitor, run_wrk
from .results import TARGETS, Run, TargetResult
from .servers import (
    BENCH,
    ROOT,
    MemorySampler,
    Server,
    clean_env,
    free_port,
    gunicorn_argv,
    hypercorn_argv,
    start_server,
    stop_server,
    uvicorn_argv,
    wait_ready,
)

SECRET_KEY = "quart_app-bench-fixed-secret-key-not-for-production"  # noqa: S105
HYPERCORN_READY = "Running on http://"
UVICORN_READY = "Application startup complete."


@dataclass
class Settings:
    duration: float
    mixed_duration: float
    warmup: float
    limit_duration: float
    rounds: int
    users: int
    many_users: int
    postgres: str | None
    targets: list[str]
    profile_dir: Path | None
    server_env: dict[str, str]
    work: Path
    app_dir: Path = ROOT  # the quart_app under test: the work tree, or a git archive of it
    app_label: str = "the work tree"
    argon2: dict[str, int] = field(default_factory=dict)  # quart_app's own parameters
    peer_python: Path | None = None  # bench/.venv-fastapi's, when FastAPI-Users is measured
    peer_hash: str = ""  # the seed password as FastAPI-Users' PasswordHelper hashes it

    def quart_env(self, overrides: dict[str, str]) -> dict[str, str]:
        """The environment of quart_app's processes: PYTHONPATH names an archived app."""
        env = clean_env({**overrides, **self.server_env})
        if self.app_dir != ROOT:
            env["PYTHONPATH"] = str(self.app_dir)
        return env

    def share(self, total: float) -> float:
        return total / self.rounds

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.server_env.items())
        return (
            f"every workload {self.rounds} rounds, the targets taking turns; per target: wrk "
            f"-t2 -c32 {self.duration:g} s in all (after {self.warmup:g} s of warm-up), form "
            f"flows {self.duration:g} s with {FLOW_CLIENTS} clients, mixed "
            f"{self.mixed_duration:g} s (1 client GET /index/ at 20/s + 4 clients logging in); "
            f"{self.users:,} users ({self.many_users:,} in the many-users run); 2 workers per "
            f"server; quart_app ({self.app_label}): its hypercorn.toml, "
            f"QUART_RATE_LIMITER_ENABLED=false {extra}"
        ).rstrip()


@dataclass
class Live:
    """A target being served: its server, what it measured, the cookie of its logged-in user."""

    result: TargetResult
    server: Server
    probe: str
    ready_line: str | None
    accounts: bool = True  # an app with logins (all but the bare route)
    full: bool = True  # every workload (the many-users run has only two)
    cookie: str | None = None
    sampler: MemorySampler | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.result.key


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _login_cookie(base_url: str, name: str) -> str:
    async with Visitor(base_url) as browser:
        await browser.login(name, dbs.SEED_PASSWORD)
        await browser.index(name)  # as a browser would: any flashed message is now read
        return browser.cookie_header()


def prepare_quart_app(result: TargetResult, s: Settings, postgres: str | None) -> Live:
    folder = Path(tempfile.mkdtemp(prefix=f"{result.key}-", dir=s.work))
    cleanups: list[Callable[[], None]] = []
    if postgres:
        asyncio.run(dbs.recreate_database(postgres))
        cleanups.append(lambda: asyncio.run(dbs.recreate_database(postgres, drop_only=True)))
        url = dbs.bench_database_url(postgres)
    else:
        url = f"sqlite://{folder / 'bench.sqlite3'}"
    env = s.quart_env(
        {
            "QUART_INSTANCE_PATH": str(folder),
            "QUART_DATABASE_URL": url,
            "QUART_RATE_LIMITER_ENABLED": "false",
            "QUART_SECRET_KEY": SECRET_KEY,
        }
    )
    log = folder / "server.log"
    try:
        dbs.migrate_quart_app(s.app_dir, env, log)
        hasher = dbs.app_hasher(s.argon2)
        if postgres:
            asyncio.run(dbs.seed_quart_app_postgres(url, result.users, hasher))
        else:
            dbs.seed_quart_app_sqlite(folder / "bench.sqlite3", result.users, hasher)
        port = free_port()
        argv = hypercorn_argv("quart_app:app", port, s.app_dir)
        server = start_server(result.key, argv, cwd=s.app_dir, env=env, port=port, log=log)
    except BaseException:
        for cleanup in cleanups:
            cleanup()
        raise
    full = result.key != "sqlite_many"
    return Live(result, server, "/login/", HYPERCORN_READY, full=full, cleanups=cleanups)


def prepare_bare(result: TargetResult, s: Settings) -> Live:
    folder = Path(tempfile.mkdtemp(prefix="bare-", dir=s.work))
    port = free_port()
    argv = hypercorn_argv("bench.bare:app", port, s.app_dir)
    log = folder / "server.log"
    server = start_server("bare", argv, cwd=ROOT, env=clean_env({}), port=port, log=log)
    return Live(result, server, "/index/", HYPERCORN_READY, accounts=False, full=False)


def prepare_flask(result: TargetResult, s: Settings, python: Path) -> Live:
    folder = Path(tempfile.mkdtemp(prefix="flask-", dir=s.work))
    database = folder / "flask.sqlite3"
    env = clean_env(
        {"FLASK_SECRET_KEY": SECRET_KEY, "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"}
    )
    log = folder / "server.log"
    dbs.init_flask_original(python, env, log)
    dbs.seed_flask_original(database, result.users)
    port = free_port()
    argv = gunicorn_argv("flask_original.wsgi:app", port)
    server = start_server("flask", argv, cwd=BENCH, env=env, port=port, log=log)
    return Live(result, server, "/login/", None)


def prepare_peer(result: TargetResult, s: Settings) -> Live:
    if s.peer_python is None:
        raise RuntimeError("no virtualenv for FastAPI-Users")
    folder = Path(tempfile.mkdtemp(prefix="fastapi-", dir=s.work))
    database = folder / "peer.sqlite3"
    env = clean_env(
        {"PEER_SECRET_KEY": SECRET_KEY, "PEER_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    )
    log = folder / "server.log"
    dbs.init_peer(s.peer_python, env, log)
    dbs.seed_peer(database, result.users, s.peer_hash)
    port = free_port()
    argv = uvicorn_argv("fastapi_users_peer.app:app", port)
    server = start_server("fastapi", argv, cwd=BENCH, env=env, port=port, log=log)
    return Live(result, server, "/login/", UVICORN_READY)


def start_all(s: Settings, stack: ExitStack, flask_python: Path | None, run: Run) -> list[Live]:
    """Start every target; one that cannot start is marked failed in run and left out."""
    lives: list[Live] = []
    for key in s.targets:
        users = {"bare": 0, "sqlite_many": s.many_users}.get(key, s.users)
        result = run.results[key] = TargetResult(key, users=users)
        progress(f"{TARGETS[key]}: starting")
        try:
            if key == "bare":
                live = prepare_bare(result, s)
            elif key == "flask":
                if flask_python is None:
                    raise RuntimeError("no virtualenv for the Flask original")
                live = prepare_flask(result, s, flask_python)
            elif key == "fastapi":
                live = prepare_peer(result, s)
            else:
                live = prepare_quart_app(result, s, s.postgres if key == "postgres" else None)
        except Exception as error:
            fail(result, error)
            continue
        stack.callback(_stop, live)
        lives.append(live)
    for live in running(lives):
        try:
            wait_ready(live.server, live.probe, ready_line=live.ready_line)
            live.sampler = stack.enter_context(MemorySampler(live.server.process.pid))
            if live.accounts:
                live.cookie = asyncio.run(_login_cookie(live.server.base_url, dbs.username(0)))
            run_wrk(live.server.base_url + "/index/", s.warmup, cookie=live.cookie)
        except Exception as error:
            fail(live.result, error)
    return lives


def _stop(live: Live) -> None:
    try:
        stop_server(live.server)
    finally:
        for cleanup in live.cleanups:
            cleanup()


def fail(result: TargetResult, error: BaseException) -> None:
    """Mark the target failed: its log's last line for the report, all of it on stderr."""
    message = f"{type(error).__name__}: {error}"
    progress(f"{TARGETS[result.key]} failed: {message}")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    result.failed = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def running(lives: list[Live]) -> list[Live]:
    return [live for live in lives if live.result.failed is None]
