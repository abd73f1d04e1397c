"""The app's own cost per request, without a server: `python -m bench.inprocess`.

Drives quart_app's ASGI interface in one process (no Hypercorn, no sockets, no client), as
the benchmark's servers run it (SQLite, the rate limiter off), and prints the CPU time of
one request per page: a logged-in `GET /index/`, the anonymous redirect, `GET /login/`.
What a server adds on top is the same for every version of the app, so this isolates what
a change to the app itself costs or saves, with far less noise than a run of `make bench`.

    .venv/bin/python -m bench.inprocess                 # 5 rounds of 2,000 each
    .venv/bin/python -m bench.inprocess --profile out   # also cProfile into out.<page>.pstats
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
USER_AGENT = "bench-inprocess/1"
CLIENT = ("127.0.0.1", 50000)

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _environment(folder: Path) -> None:
    os.environ.update(
        QUART_INSTANCE_PATH=str(folder / "instance"),
        QUART_DATABASE_URL=f"sqlite://{folder / 'bench.sqlite3'}",
        QUART_SECRET_KEY=secrets.token_urlsafe(32),
        QUART_RATE_LIMITER_ENABLED="false",
    )
    subprocess.run(  # noqa: S603  # this interpreter's own quart command
        [str(Path(sys.executable).parent / "quart"), "--app", "quart_app", "migrate"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def _scope(path: str, cookie: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", USER_AGENT.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": CLIENT,
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


async def _request(app: Any, path: str, cookie: str | None) -> int:
    status = 0
    sent = asyncio.Event()
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        message = next(messages, None)
        if message is None:  # the client hangs up once the whole response is in
            await sent.wait()
            return {"type": "http.disconnect"}
        return message

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body"):
            sent.set()

    await app(_scope(path, cookie), receive, send)
    return status


async def _log_in(app: Any) -> str:
    """Register through the form (which logs in); the Cookie header the browser would send."""
    client = app.test_client()
    headers = {"User-Agent": USER_AGENT}
    where = {"client": CLIENT}  # session_protection compares it with every request's
    form = await client.get("/register/", headers=headers, scope_base=where)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', await form.get_data(as_text=True))
    assert found, "no csrf_token on /register/"
    password = "correct horse battery"  # noqa: S105  (a throwaway database's one user)
    data = {"username": "bench", "password": password, "password_confirm": password}
    response = await client.post(
        "/register/", form={**data, "csrf_token": found.group(1)}, headers=headers, scope_base=where
    )
    assert response.status_code in (302, 303), response.status_code
    await client.get("/index/", headers=headers, scope_base=where)  # the flash is read
    return "; ".join(f"{c.name}={c.value}" for c in client.cookie_jar)


PAGES = {
    "logged-in GET /index/": ("/index/", True, 200),
    "anonymous GET /index/": ("/index/", False, 302),
    "anonymous GET /login/": ("/login/", False, 200),
}


async def _run(rounds: int, count: int, profile: str | None) -> None:
    from quart_app import app

    async with app.test_app():
        cookie = await _log_in(app)
        for name, (path, logged_in, expected) in PAGES.items():
            jar = cookie if logged_in else None
            for _ in range(200):
                got = await _request(app, path, jar)
                assert got == expected, (name, got, jar)
            times = []
            for _ in range(rounds):
                start = time.process_time()
                for _ in range(count):
                    await _request(app, path, jar)
                times.append((time.process_time() - start) / count * 1e6)
            spread = f"{min(times):.0f}-{max(times):.0f}"
            print(f"{name:28} median {statistics.median(times):6.0f} us  ({spread})", flush=True)
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(count):
                    await _request(app, path, jar)
                profiler.disable()
                slug = re.sub(r"\W+", "-", name).strip("-")
                profiler.dump_stats(f"{profile}.{slug}.pstats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--profile", help="write cProfile stats to PROFILE.<page>.pstats")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        _environment(Path(folder))
        asyncio.run(_run(args.rounds, args.count, args.profile))


if __name__ == "__main__":
    main()
