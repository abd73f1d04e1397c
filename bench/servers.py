"""The servers under test: start each on 127.0.0.1, wait until it serves, watch its memory, stop it.

Each server runs in a process group of its own, which is what `stop` signals: the benchmark
ends the processes it started and nothing else.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
FLASK_VENV = BENCH / ".venv-flask"
FLASK_REQUIREMENTS = BENCH / "flask_original" / "requirements.txt"
PEER_VENV = BENCH / ".venv-fastapi"
PEER_REQUIREMENTS = BENCH / "fastapi_users_peer" / "requirements.txt"
WORKERS = 2
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
INSTALL_TIMEOUT = 900.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody was listening on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any QUART_* or FLASK_* setting, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUART_", "FLASK_"))}
    env.update(overrides)
    return env


@dataclass
class Server:
    """One server's master process (and its workers), in a process group of its own."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the master's children, less helpers."""
        workers = []
        for pid in process_tree(self.process.pid)[1:]:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                workers.append(pid)
        return workers


def start_server(
    name: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], port: int, log: Path
) -> Server:
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603  (fixed argv, no shell)
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, process, port, log)


def hypercorn_argv(app: str, port: int, app_dir: Path = ROOT) -> list[str]:
    """The project's own way to serve: its hypercorn.toml (2 workers), on a free port."""
    config = str(app_dir / "hypercorn.toml")
    bind = f"127.0.0.1:{port}"
    return [str(VENV_BIN / "hypercorn"), "--config", config, "--bind", bind, app]


def gunicorn_argv(app: str, port: int) -> list[str]:
    """The Flask original as people deploy it: gunicorn, 2 sync workers."""
    gunicorn = str(FLASK_VENV / "bin" / "gunicorn")
    bind = f"127.0.0.1:{port}"
    workers = str(WORKERS)
    return [gunicorn, "--workers", workers, "--bind", bind, "--no-control-socket", app]


def uvicorn_argv(app: str, port: int) -> list[str]:
    """FastAPI-Users as its documentation deploys it: uvicorn, 2 worker processes."""
    uvicorn = str(PEER_VENV / "bin" / "uvicorn")
    return [uvicorn, "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port), app]


def wait_ready(server: Server, probe_path: str, *, ready_line: str | None = None) -> None:
    """Wait until the server answers HTTP and, if given, every worker has logged ready_line."""
    deadline = time.monotonic() + START_TIMEOUT
    answered = False
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited while starting:\n{server.log_tail()}")
        answered = answered or _answers(server.port, probe_path)
        log = server.log_path.read_text(errors="replace")
        if answered and (ready_line is None or log.count(ready_line) >= WORKERS):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"{server.name} did not start in {START_TIMEOUT:.0f} s:\n{server.log_tail()}"
    )


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
    except OSError:
        return False
    finally:
        connection.close()
    return True


def stop_server(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL it if it outstays STOP_TIMEOUT."""
    if server.process.poll() is not None:
        return
    pgid = server.process.pid  # start_new_session: the master leads its own group
    os.killpg(pgid, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        server.process.wait(timeout=STOP_TIMEOUT)
    # Workers of a killed master may linger for a moment; leave none of them behind.
    for _ in range(int(STOP_TIMEOUT * 10)):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)


def process_tree(root: int) -> list[int]:
    """root and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after the last one.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu(root: int) -> dict[int, float]:
    """CPU-seconds (user + system) that root and each of its descendants have used so far."""
    used = {}
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return used


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


class MemorySampler:
    """Poll the RSS sum of a process tree from a thread; `peak` is the largest sum seen."""

    def __init__(self, root_pid: int, interval: float = 0.05, tree_every: float = 1.0) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.tree_every = tree_every
        self.peak = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        pids: list[int] = []
        next_tree = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_tree:
                pids = process_tree(self.root_pid)
                next_tree = now + self.tree_every
            total = sum(rss_bytes(pid) for pid in pids)
            if total > self.peak:
                self.peak = total
                self.processes = len(pids)
            self._stop.wait(self.interval)


def ensure_flask_venv(log: Path) -> Path:
    """bench/.venv-flask with the Flask original's requirements; made once, then reused."""
    return ensure_venv(FLASK_VENV, FLASK_REQUIREMENTS, log)


def ensure_peer_venv(log: Path) -> Path:
    """bench/.venv-fastapi with FastAPI-Users' requirements; made once, then reused."""
    return ensure_venv(PEER_VENV, PEER_REQUIREMENTS, log)


def ensure_venv(venv: Path, requirements: Path, log: Path) -> Path:
    """A virtualenv of its own for a peer target, remade when its requirements change."""
    python = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = requirements.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {venv.relative_to(ROOT)} (once) ...", file=sys.stderr, flush=True)
    with log.open("ab") as output:
        for argv in (
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        ):
            subprocess.run(  # noqa: S603  (fixed argv, no shell)
                argv, check=True, stdout=output, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT
            )
    stamp.write_text(wanted)
    return python
