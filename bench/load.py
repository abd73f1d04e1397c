"""The load: wrk for plain GETs, a lean asyncio browser for the form flows and the mixed run.

Every loop here ends by itself: wrk has its duration and a subprocess timeout, each flow loop
stops at its deadline, and every request has a timeout.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .client import USER_AGENT, Browser, hidden_input

WRK_GRACE = 60.0
REDIRECTS = (302, 303)
FLOW_CLIENTS = 8  # clients of the login and registration workloads


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile of values, interpolated between the two nearest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class HttpResult:
    """What wrk measured: rate, latency percentiles (ms) and failed requests."""

    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def median_of_rounds(rounds: list[HttpResult]) -> HttpResult | None:
    """One result for several wrk rounds: the median of each number, requests and errors summed."""
    if not rounds:
        return None
    return HttpResult(
        statistics.median(r.rate for r in rounds),
        statistics.median(r.p50_ms for r in rounds),
        statistics.median(r.p99_ms for r in rounds),
        sum(r.requests for r in rounds),
        sum(r.errors for r in rounds),
    )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> HttpResult:
    """Read the numbers of `wrk --latency` output."""

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {pct}% latency in wrk output:\n{output}")
        return float(match[1]) * _UNITS_MS[match[2]]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    requests = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if rate is None or requests is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx[1]) if non_2xx else 0
    return HttpResult(float(rate[1]), latency("50"), latency("99"), int(requests[1]), errors)


def run_wrk(
    url: str,
    duration: float,
    *,
    cookie: str | None = None,
    connections: int = 32,
    threads: int = 2,
) -> HttpResult:
    """GET url with wrk for duration seconds, keep-alive, `connections` at once."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        f"User-Agent: {USER_AGENT}",
    ]
    if cookie:
        argv += ["-H", f"Cookie: {cookie}"]
    argv.append(url)
    done = subprocess.run(  # noqa: S603  (fixed argv, no shell)
        argv, capture_output=True, text=True, check=True, timeout=duration + WRK_GRACE
    )
    return parse_wrk(done.stdout)


class FlowError(RuntimeError):
    """A step of a form flow did not answer as the site's contract says."""


# What a failed flow may raise: a wrong answer, a broken or slow connection, a garbled reply.
FLOW_ERRORS = (
    FlowError,
    OSError,  # ProtocolError too
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    TimeoutError,
    ValueError,  # an unreadable status line or length
)


class Visitor(Browser):
    """A browser on the tutorial's pages: reads each form's csrf_token, posts it back."""

    def forget(self) -> None:
        """Drop every cookie: the next flow starts as a new visitor."""
        self.cookies.clear()

    async def form_token(self, path: str) -> str:
        """The form's csrf_token; "" for a site whose forms carry none (FastAPI-Users)."""
        response = await self.get(path)
        if response.status != 200:
            raise FlowError(f"GET {path}: {response.status}")
        return hidden_input(response.body, "csrf_token") or ""

    async def submit(self, path: str, fields: dict[str, str]) -> None:
        """GET the form, POST it with its token; anything but a redirect to /index/ fails.

        A form without a token is posted without one: a site that wants it answers 400.
        """
        token = await self.form_token(path)
        response = await self.post(path, {"csrf_token": token, **fields} if token else fields)
        location = response.header("location") or ""
        if response.status not in REDIRECTS or not location.endswith("/index/"):
            raise FlowError(f"POST {path}: {response.status} {location!r}")

    async def login(self, username: str, password: str) -> None:
        self.forget()
        await self.submit("/login/", {"username": username, "password": password})

    async def register(self, username: str, password: str) -> None:
        self.forget()
        fields = {"username": username, "password": password, "password_confirm": password}
        await self.submit("/register/", fields)

    async def index(self, username: str) -> None:
        """GET /index/ as a logged-in user: 200 and a greeting with the username."""
        response = await self.get("/index/")
        if response.status != 200 or username.encode() not in response.body:
            raise FlowError(f"GET /index/: {response.status}, greeting missing")


Flow = Callable[[Visitor, int, int], Awaitable[None]]


@dataclass
class FlowResult:
    """Completed form flows per second of clients running one flow after another."""

    completed: int
    errors: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def add(self, other: FlowResult) -> None:
        """Pool another round into this one."""
        self.completed += other.completed
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.latencies += other.latencies


async def run_flows(
    base_url: str, clients: int, duration: float, flow: Flow, *, first_error: list[str]
) -> FlowResult:
    """Run `clients` browsers, each doing flow(browser, client, n) until duration is up."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + duration
    result = FlowResult(0, 0, 0.0)

    async def client(number: int) -> None:
        async with Visitor(base_url) as browser:
            n = 0
            while loop.time() < deadline:
                began = loop.time()
                try:
                    await flow(browser, number, n)
                except FLOW_ERRORS as error:
                    result.errors += 1
                    if not first_error:
                        first_error.append(f"{type(error).__name__}: {error}")
                    await asyncio.sleep(0.05)  # a failing server must not be spun against
                else:
                    result.completed += 1
                    result.latencies.append(loop.time() - began)
                n += 1

    await asyncio.gather(*(client(number) for number in range(clients)))
    result.elapsed = loop.time() - start
    return result


@dataclass
class MixedResult:
    """The paced client's latencies while other clients log in, and their login rate."""

    latencies: list[float]
    errors: int
    logins: FlowResult

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    def add(self, other: MixedResult) -> None:
        """Pool another round into this one."""
        self.latencies += other.latencies
        self.errors += other.errors
        self.logins.add(other.logins)


async def run_mixed(
    base_url: str,
    *,
    reader: tuple[str, str],
    login_flow: Flow,
    duration: float,
    rate: float = 20.0,
    login_clients: int = 4,
    first_error: list[str],
) -> MixedResult:
    """GET /index/ logged in at `rate` per second while login_clients log in non-stop.

    The reader is open-loop: each request starts on its own schedule, whether or not the one
    before has answered, so a stalled server shows in the latencies instead of hiding them.
    """
    latencies: list[float] = []
    errors = 0
    async with Visitor(base_url) as paced:
        username, password = reader
        await paced.login(username, password)
        await paced.index(username)

        async def one_get() -> None:
            nonlocal errors
            began = time.perf_counter()
            try:
                await paced.index(username)
            except FLOW_ERRORS as error:
                errors += 1
                if not first_error:
                    first_error.append(f"{type(error).__name__}: {error}")
            else:
                latencies.append(time.perf_counter() - began)

        async def pacer() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks: list[asyncio.Task[None]] = []
            for n in range(int(duration * rate)):
                await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
                tasks.append(asyncio.create_task(one_get()))
            await asyncio.gather(*tasks)

        logins, _ = await asyncio.gather(
            run_flows(base_url, login_clients, duration, login_flow, first_error=first_error),
            pacer(),
        )
    return MixedResult(latencies, errors, logins)
