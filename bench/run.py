"""`python -m bench`: start every target, drive them in turns, print one table with the targets.

Targets, each with 2 worker processes on 127.0.0.1: quart_app under Hypercorn on SQLite
(1,000 users, and again with 100,000 for the logged-in GET and the logins), on PostgreSQL
when one is named, a bare Quart route under Hypercorn, and the Flask original under gunicorn.

All servers run for the whole benchmark and each workload is measured in rounds, the targets
taking turns within a round (in a rotating order), so that every ratio compares numbers taken
minutes, not hours, apart, on a machine whose speed drifts with its neighbours' load.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from werkzeug.security import generate_password_hash

from . import databases as dbs
from . import profile
from .machine import database_cpu, machine, machine_cpu, ours_cpu
from .report import render
from .results import TARGETS, CpuWindow, Run
from .servers import ROOT, ensure_flask_venv, ensure_peer_venv
from .targets import Settings, progress, start_all
from .workloads import measure

# Profile file names' workloads, and the names their CPU is counted under.
CPU_WORKLOADS = {
    "logged-in-get": "logged-in",
    "anonymous-get": "anonymous",
    "logins": "logins",
    "registrations": "registrations",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="short runs: under 2 minutes in all")
    add("--duration", type=float, help="seconds per workload and target (10; quick: 3)")
    add("--mixed-duration", type=float, help="seconds of mixed load per target (15; quick: 5)")
    add("--rounds", type=int, help="rounds each workload is split into (5; quick: 2)")
    add("--warmup", type=float, help="seconds of warm-up GETs per target (2; quick: 1)")
    add("--limit-duration", type=float, help="seconds of each hash-limit run (5; quick: 2)")
    add("--users", type=int, default=1_000, help="users in the table (1000)")
    add("--many-users", type=int, default=100_000, help="users of the many-users run (100000)")
    add(
        "--postgres",
        default=os.environ.get("QUART_DATABASE_URL"),
        help="a PostgreSQL server URL (default: QUART_DATABASE_URL when it names one); the "
        f"benchmark creates, uses and drops its own database there: the one the URL names, or "
        f"{dbs.BENCH_DATABASE} for a URL naming postgres",
    )
    add("--targets", default=",".join(TARGETS), help=f"some of {','.join(TARGETS)} (all)")
    add(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the quart_app servers, for experiments: QUART_HASH_THREADS=1,"
        " MALLOC_ARENA_MAX=2, ... (repeatable)",
    )
    add("--profile", type=Path, help="also record py-spy profiles of the workers in this folder")
    add(
        "--app-rev",
        metavar="REV",
        help="benchmark quart_app as committed at REV (a `git archive` of it), not the work tree",
    )
    add(
        "--app-dir",
        type=Path,
        help="benchmark the quart_app in this folder (another checkout) instead of the work tree",
    )
    add("--output", type=Path, help="also write the report to this file")
    add("--keep", action="store_true", help="keep the work folder (server logs, databases)")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace, work: Path) -> Settings:
    quick = args.quick
    postgres = args.postgres if args.postgres and args.postgres.startswith("postgres") else None
    targets = [key.strip() for key in args.targets.split(",") if key.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise SystemExit(f"unknown targets: {', '.join(unknown)}")
    if "postgres" in targets and postgres is None:
        targets.remove("postgres")
    if args.profile and args.profile.exists() and any(args.profile.iterdir()):
        raise SystemExit(f"--profile wants a new or empty folder: {args.profile}")
    if any("=" not in item for item in args.server_env):
        raise SystemExit("--server-env takes NAME=VALUE")
    server_env = dict(item.split("=", 1) for item in args.server_env)
    return Settings(
        duration=args.duration or (3.0 if quick else 10.0),
        mixed_duration=args.mixed_duration or (5.0 if quick else 15.0),
        warmup=args.warmup or (1.0 if quick else 2.0),
        limit_duration=args.limit_duration or (2.0 if quick else 5.0),
        rounds=max(1, args.rounds or (2 if quick else 5)),
        users=args.users,
        many_users=args.many_users,
        postgres=postgres,
        targets=[key for key in TARGETS if key in targets],
        profile_dir=args.profile.resolve() if args.profile else None,
        server_env=server_env,
        work=work,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="quart_app-bench-"))
    s = settings(args, work)
    shown = sys.executable
    if shown.startswith(str(ROOT)):
        shown = os.path.relpath(shown, ROOT)
    command = shlex.join([shown, "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    try:
        flask_python = ensure_flask_venv(work / "flask-venv.log") if "flask" in s.targets else None
        if "fastapi" in s.targets:
            s.peer_python = ensure_peer_venv(work / "fastapi-venv.log")
            s.peer_hash = dbs.peer_password_hash(s.peer_python)
        if args.app_rev:
            s.app_dir, s.app_label = archive(args.app_rev, work / "app")
        elif args.app_dir:
            s.app_dir, s.app_label = args.app_dir.resolve(), str(args.app_dir)
        s.argon2 = dbs.argon2_settings(
            s.app_dir, s.quart_env({"QUART_INSTANCE_PATH": str(work / "instance")})
        )
        hasher = dbs.app_hasher(s.argon2)
        werkzeug_method = generate_password_hash(dbs.SEED_PASSWORD).split("$")[0]
        run = Run(
            command=command,
            settings=s.describe(),
            machine=machine(),
            hashes=(
                f"quart_app argon2id m={hasher.memory_cost} KiB, t={hasher.time_cost}, "
                f"p={hasher.parallelism} (quart_app.config.DEFAULTS); Flask original werkzeug "
                f"{werkzeug_method}"
                + (
                    f"; FastAPI-Users argon2id {s.peer_hash.split('$')[3]} (pwdlib's defaults)"
                    if s.peer_hash
                    else ""
                )
            ),
            load_before=os.getloadavg()[0],
        )
        with cpu_window(run.cpu) as servers_done, ExitStack() as stack:
            lives = start_all(s, stack, flask_python, run)
            measure(s, lives, run)
            for live in lives:
                if live.sampler is not None:
                    live.result.peak_rss = live.sampler.peak
                    live.result.processes = live.sampler.processes
            servers_done()
            progress("stopping the servers")
        run.load_after = os.getloadavg()[0]
        run.elapsed = time.monotonic() - started
        report = render(run)
        print(report)
        if args.output:
            args.output.write_text(report + "\n")
        if s.profile_dir is not None:
            for path in sorted(s.profile_dir.glob("*.txt")):
                key, _, workload = path.stem.partition("-")
                result = run.results.get(key)
                cpu_ms = result.cpu_ms(CPU_WORKLOADS.get(workload, "")) if result else None
                print("\n" + profile.summarize(path, cpu_ms))
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(result.failed for result in run.results.values()) else 0


def archive(rev: str, folder: Path) -> tuple[Path, str]:
    """Unpack quart_app as committed at rev into folder; read-only for the repository."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(  # noqa: S603  (fixed argv, no shell)
        [*git, "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    folder.mkdir(parents=True)
    tar = subprocess.run(  # noqa: S603
        [*git, "archive", commit], capture_output=True, check=True, timeout=120
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive_file:
        archive_file.extractall(folder, filter="data")
    return folder, f"commit {commit}"


@contextmanager
def cpu_window(window: CpuWindow) -> Iterator[Callable[[], None]]:
    """Account the machine's CPU over the body: ours, PostgreSQL's, and everybody else's.

    The body calls the function it is given before stopping the servers, while PostgreSQL's
    backends serving them still exist; our own children count once reaped, at the end.
    """
    wall, (busy, steal), ours, db_before = (
        time.monotonic(),
        machine_cpu(),
        ours_cpu(),
        database_cpu(),
    )

    def servers_done() -> None:
        db_after = database_cpu()
        window.database = sum(cpu - db_before.get(pid, 0.0) for pid, cpu in db_after.items())

    try:
        yield servers_done
    finally:
        busy_after, steal_after = machine_cpu()
        window.wall = time.monotonic() - wall
        window.busy = busy_after - busy
        window.steal = steal_after - steal
        window.ours = ours_cpu() - ours
