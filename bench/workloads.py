"""The workloads, in rounds: the targets take turns, so that each ratio is of close numbers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

from . import databases as dbs
from . import profile
from .load import FLOW_CLIENTS, Flow, FlowResult, Visitor, run_flows, run_mixed, run_wrk
from .results import Limit, Run
from .servers import tree_cpu
from .targets import Live, Settings, fail, progress, running

REGISTER_PASSWORD = "bench-register-password-9"  # noqa: S105
# Anonymous GETs of pages that other features bring (mail recovery, two-factor login's
# second step): measured where the route exists, reported "not present" where it answers 404.
OPTIONAL_PAGES = ("/forgot-password/", "/login/two-factor/")
T = TypeVar("T")


def verify_limit(verify: Callable[[], object], duration: float, threads: int = 2) -> Limit:
    """How many password checks `threads` threads manage in duration seconds."""
    deadline = time.perf_counter() + duration

    def verify_until_deadline() -> int:
        count = 0
        while time.perf_counter() < deadline:
            verify()
            count += 1
        return count

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: verify_until_deadline(), range(threads)))
    return Limit(total, time.perf_counter() - start)


def login_flow(users: int) -> Flow:
    """Log in as users spread over the whole table, a fresh visitor every time."""

    async def flow(browser: Visitor, client: int, n: int) -> None:
        # Consecutive logins, over all clients, go to users far apart in the table.
        number = (n * FLOW_CLIENTS + client) * 7919 % users
        await browser.login(dbs.username(number), dbs.SEED_PASSWORD)

    return flow


def register_flow(round_number: int) -> Flow:
    async def flow(browser: Visitor, client: int, n: int) -> None:
        await browser.register(f"reg{round_number}x{client}x{n}", REGISTER_PASSWORD)

    return flow


async def _check_cookie(base_url: str, cookie: str, name: str) -> None:
    """The wrk cookie still opens the page: wrk counts a redirect to /login/ as a success."""
    async with Visitor(base_url) as browser:
        browser.extra_headers["Cookie"] = cookie
        await browser.index(name)


async def _present(base_url: str, path: str) -> bool:
    """Whether the page exists: anything but a 404 to an anonymous visitor."""
    async with Visitor(base_url) as browser:
        return (await browser.get(path)).status != 404


def rotate(items: list[T], round_number: int) -> list[T]:
    """items, starting at a different one each round, so no target always goes first."""
    if not items:
        return items
    k = round_number % len(items)
    return items[k:] + items[:k]


def in_rounds(
    s: Settings,
    name: str,
    lives: list[Live],
    step: Callable[[Live, int], None],
    before_round: Callable[[int], None] | None = None,
) -> None:
    """Run step(live, round) for every live target in every round, targets taking turns."""
    for number in range(s.rounds):
        progress(f"{name}: round {number + 1} of {s.rounds}")
        if before_round is not None:
            before_round(number)
        for live in rotate(running(lives), number):
            try:
                step(live, number)
            except Exception as error:
                fail(live.result, error)


@contextmanager
def server_cpu(live: Live, workload: str) -> Iterator[Callable[[int], None]]:
    """Add the server's CPU over the body, and the operations it counts, to live's result."""
    operations = [0]
    before = tree_cpu(live.server.process.pid)

    def count(n: int) -> None:
        operations[0] += n

    yield count
    after = tree_cpu(live.server.process.pid)
    used = [seconds - before.get(pid, 0.0) for pid, seconds in after.items()]
    live.result.add_cpu(workload, sum(used), operations[0], max(used, default=0.0))


def spy(s: Settings, live: Live, workload: str, duration: float) -> AbstractContextManager[None]:
    return profile.record(s.profile_dir, live.server, f"{live.key}-{workload}", duration)


def measure(s: Settings, lives: list[Live], run: Run) -> None:
    wrk_seconds = max(1.0, round(s.share(s.duration)))
    accounts = [live for live in lives if live.accounts]
    full = [live for live in accounts if live.full]

    def logged_in(live: Live, _: int) -> None:
        with spy(s, live, "logged-in-get", wrk_seconds), server_cpu(live, "logged-in") as count:
            result = run_wrk(live.server.base_url + "/index/", wrk_seconds, cookie=live.cookie)
            count(result.requests)
        live.result.logged_in_rounds.append(result)

    def anonymous(live: Live, _: int) -> None:
        with spy(s, live, "anonymous-get", wrk_seconds), server_cpu(live, "anonymous") as count:
            result = run_wrk(live.server.base_url + "/index/", wrk_seconds)
            count(result.requests)
        live.result.anonymous_rounds.append(result)

    in_rounds(s, "logged-in GET /index/", lives, logged_in)
    for live in running(accounts):
        try:
            asyncio.run(_check_cookie(live.server.base_url, live.cookie or "", dbs.username(0)))
        except Exception as error:
            fail(live.result, error)
    in_rounds(s, "anonymous GET /index/", full, anonymous)

    def optional_page(path: str) -> Callable[[Live, int], None]:
        def step(live: Live, _: int) -> None:
            if live.result.pages.get(path, []) is None:
                return
            if not asyncio.run(_present(live.server.base_url, path)):
                live.result.pages[path] = None
                return
            with spy(s, live, "page", wrk_seconds), server_cpu(live, f"page {path}") as count:
                result = run_wrk(live.server.base_url + path, wrk_seconds)
                count(result.requests)
            rounds = live.result.pages.setdefault(path, [])
            if rounds is not None:
                rounds.append(result)

        return step

    quart_apps = [live for live in full if live.key in ("sqlite", "postgres")]
    for path in OPTIONAL_PAGES:
        in_rounds(s, f"anonymous GET {path}", quart_apps, optional_page(path))

    def limits(_: int) -> None:
        share = s.share(s.limit_duration)
        if any(live.key not in ("flask", "fastapi") for live in running(accounts)):
            hasher = dbs.app_hasher(s.argon2)
            argon2_hash = hasher.hash(dbs.SEED_PASSWORD)
            run.argon2.add(
                verify_limit(lambda: hasher.verify(argon2_hash, dbs.SEED_PASSWORD), share)
            )
        if s.peer_hash and any(live.key == "fastapi" for live in running(accounts)):
            peer = dbs.argon2_of_hash(s.peer_hash)
            run.peer.add(verify_limit(lambda: peer.verify(s.peer_hash, dbs.SEED_PASSWORD), share))
        if any(live.key == "flask" for live in running(accounts)):
            werkzeug_hash = generate_password_hash(dbs.SEED_PASSWORD)
            run.werkzeug.add(
                verify_limit(lambda: check_password_hash(werkzeug_hash, dbs.SEED_PASSWORD), share)
            )

    def flows(live: Live, flow: Flow, workload: str) -> FlowResult:
        result = live.result
        with spy(s, live, workload, s.share(s.duration)), server_cpu(live, workload) as count:
            measured = asyncio.run(
                run_flows(
                    live.server.base_url,
                    FLOW_CLIENTS,
                    s.share(s.duration),
                    flow,
                    first_error=result.first_error,
                )
            )
            count(measured.completed)
        return measured

    def logins(live: Live, _: int) -> None:
        measured = flows(live, login_flow(live.result.users), "logins")
        if live.result.logins is None:
            live.result.logins = measured
        else:
            live.result.logins.add(measured)

    def registrations(live: Live, number: int) -> None:
        measured = flows(live, register_flow(number), "registrations")
        if live.result.registrations is None:
            live.result.registrations = measured
        else:
            live.result.registrations.add(measured)

    def mixed(live: Live, _: int) -> None:
        duration = s.share(s.mixed_duration)
        with spy(s, live, "mixed", duration):
            measured = asyncio.run(
                run_mixed(
                    live.server.base_url,
                    reader=(dbs.username(1), dbs.SEED_PASSWORD),
                    login_flow=login_flow(live.result.users),
                    duration=duration,
                    first_error=live.result.first_error,
                )
            )
        if live.result.mixed is None:
            live.result.mixed = measured
        else:
            live.result.mixed.add(measured)

    in_rounds(s, "password verify limits, then logins", accounts, logins, before_round=limits)
    in_rounds(s, "registrations", full, registrations)
    in_rounds(s, "mixed", full, mixed)
