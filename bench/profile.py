"""Optional profiles of the servers' workers while a workload runs (py-spy), and their summary.

py-spy samples both workers (`--subprocesses`) without pausing them (`--nonblocking`) and
writes collapsed stacks (`--format raw`): one line per distinct stack, ending in its count.
The summary sorts the running samples by what they were for, so that each part of a request
(session query, template, CSRF token, ...) gets its share of the server's CPU per request.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .servers import VENV_BIN, Server

SAMPLE_RATE = 200
STOP_GRACE = 30.0

# Stacks whose innermost frame is one of these are threads waiting (for a socket, a queue
# item), which py-spy can count as running: they are left out of every share.
IDLE_LEAVES = (
    ".select (selectors.py",
    "_worker (concurrent/futures/thread.py:81)",
    "_connection_worker_thread (aiosqlite/core.py:59)",
    "wait (threading.py",
)
# What the work of a request was for: the first cause, in this order, that any frame of the
# stack names. A query made by the user loader counts as "session lookup", a CSRF token
# made while rendering a template as "CSRF token".
CAUSES: list[tuple[str, tuple[str, ...]]] = [
    ("argon2 hashing [hash threads]", ("(argon2/",)),
    ("werkzeug scrypt hashing (Flask)", ("_hash_internal (werkzeug/security.py",)),
    ("SQLAlchemy: user_loader and form queries (Flask)", ("(sqlalchemy/", "(flask_sqlalchemy/")),
    ("session lookup: user_loader's query (event loop)", ("(quart_app/sessions.py",)),
    ("login_user / logout_user", ("login_user (quart_app/login.py", "logout_user (quart_app")),
    ("accounts service: authenticate, register", ("(quart_app/accounts.py",)),
    ("CSRF token (wtforms SessionCSRF)", ("(wtforms/csrf", "logout_csrf_token")),
    ("sync context processor handed to a thread (run_sync)", ("run_sync.<locals>",)),
    ("  ... and run in the default thread pool [thread]", ("_WorkItem.run",)),
    ("forms (wtforms, request.form)", ("(wtforms/", "(quart_app/forms.py")),
    ("template rendering (jinja2)", ("render_template", "(jinja2/", ".html:")),
    ("session protection fingerprint", ("client_fingerprint",)),
    ("signed cookies (quart-auth, itsdangerous)", ("(quart_auth/", "(itsdangerous/")),
    ("Quart session cookie", ("(quart/sessions.py",)),
    ("security headers, no-store", ("(quart_app/security.py", "_no_store")),
    ("access log and event log", ("(logging/", "(hypercorn/logging.py")),
    ("SQLite itself [aiosqlite thread]", ("_connection_worker_thread (aiosqlite",)),
    ("tortoise ORM, other queries", ("(tortoise/", "(pypika")),
]
# The rest goes to the library of its innermost frame that one of these names.
LIBRARIES: list[tuple[str, tuple[str, ...]]] = [
    ("asyncio: socket send/receive, event loop", ("(asyncio/", "(selectors.py", "(socket.py")),
    ("Hypercorn + h11: HTTP protocol", ("(hypercorn/", "(h11/")),
    ("gunicorn: sockets, HTTP (Flask)", ("(gunicorn/",)),
    ("Flask-Login, Flask-WTF (Flask)", ("(flask_login/", "(flask_wtf/")),
    ("Quart + werkzeug: contexts, routing, hooks, response", ("(quart/", "(werkzeug/", "(flask/")),
    ("Quart-Schema", ("(quart_schema/", "(pydantic")),
    ("quart_app, other", ("(quart_app/",)),
]
PROCESS_FRAMES = re.compile(r'^(?:process \d+:"[^"]*";?)+')


def py_spy() -> Path | None:
    found = VENV_BIN / "py-spy"
    if found.exists():
        return found
    which = shutil.which("py-spy")
    return Path(which) if which else None


@contextmanager
def record(directory: Path | None, server: Server, name: str, duration: float) -> Iterator[None]:
    """Sample server's workers for about duration seconds, adding the stacks to name.txt."""
    binary = py_spy() if directory is not None else None
    if directory is None or binary is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{name}.txt"
    part = directory / f"{name}.part"
    argv = [
        str(binary),
        "record",
        "--pid",
        str(server.process.pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        str(SAMPLE_RATE),
        "--duration",
        str(math.ceil(duration)),
        "--format",
        "raw",
        "--output",
        str(part),
    ]
    with (directory / "py-spy.log").open("ab") as log:
        spy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield
        finally:
            try:
                spy.wait(timeout=duration + STOP_GRACE)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=STOP_GRACE)
            # Collapsed stacks add up: every round of a workload goes into one file.
            if part.exists():
                with output.open("a") as stacks:
                    stacks.write(part.read_text())
                part.unlink()


def summarize(path: Path, cpu_ms: float | None = None, top: int = 10) -> str:
    """Where the running samples went, by cause; with cpu_ms (server CPU per operation, as
    measured from /proc), also in milliseconds per operation."""
    causes: Counter[str] = Counter()
    frames_self: Counter[str] = Counter()
    idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = PROCESS_FRAMES.sub("", stack).split(";")
        if any(leaf in frames[-1] for leaf in IDLE_LEAVES):
            idle += count
            continue
        frames_self[_frame_name(frames[-1])] += count
        causes[_cause(frames)] += count
    busy = sum(causes.values())
    if busy == 0:
        return f"{path.name}: no samples"
    unit = f", and ms of server CPU per operation ({cpu_ms:.2f} ms in all)" if cpu_ms else ""
    lines = [
        f"{path.name}: {busy} running samples ({idle} more were idle waits); share{unit}:",
        *(
            f"  {n / busy:6.1%}" + (f" {cpu_ms * n / busy:6.2f} ms" if cpu_ms else "") + f"  {name}"
            for name, n in causes.most_common()
        ),
        "  hottest frames (self):",
        *(f"  {n / busy:6.1%}  {name}" for name, n in frames_self.most_common(top)),
    ]
    return "\n".join(lines)


def _cause(frames: list[str]) -> str:
    for name, patterns in CAUSES:
        if any(pattern in frame for frame in frames for pattern in patterns):
            return name
    for frame in reversed(frames):
        for name, patterns in LIBRARIES:
            if any(pattern in frame for pattern in patterns):
                return name
    return "other"


def _frame_name(frame: str) -> str:
    """'func (path/to/module.py:123)' without the line number."""
    head, _, location = frame.partition(" (")
    return f"{head} ({location.rsplit(':', 1)[0]})" if location else head
