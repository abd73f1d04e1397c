"""What a run measured: per target, and for the whole run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .load import FlowResult, HttpResult, MixedResult, median_of_rounds

# Column keys, in the table's order, and their headings.
TARGETS = {
    "bare": "bare Quart",
    "sqlite": "quart_app SQLite",
    "sqlite_many": "quart_app SQLite, many users",
    "postgres": "quart_app PostgreSQL",
    "flask": "Flask original",
    "fastapi": "FastAPI-Users",
}


@dataclass
class CpuWindow:
    """How busy the whole machine was during the run, and who made it so (CPU-seconds)."""

    wall: float = 0.0
    busy: float = 0.0  # all cores
    steal: float = 0.0  # taken by the hypervisor for other machines
    ours: float = 0.0  # this benchmark, its servers, wrk
    database: float = 0.0  # PostgreSQL's processes

    def share(self, seconds: float) -> float:
        """seconds of CPU as a share of everything the machine's cores had."""
        return seconds / (self.wall * (os.cpu_count() or 1)) if self.wall else 0.0

    @property
    def others(self) -> float:
        return max(0.0, self.busy - self.ours - self.database)


@dataclass
class Limit:
    """Password checks done in so many seconds, pooled over rounds."""

    verifies: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.verifies / self.seconds if self.seconds else math.nan

    def add(self, other: Limit) -> None:
        self.verifies += other.verifies
        self.seconds += other.seconds


@dataclass
class TargetResult:
    key: str
    users: int = 0
    logged_in_rounds: list[HttpResult] = field(default_factory=list)
    anonymous_rounds: list[HttpResult] = field(default_factory=list)
    # Pages of features that may not be merged yet: path -> rounds, or None when absent.
    pages: dict[str, list[HttpResult] | None] = field(default_factory=dict)
    logins: FlowResult | None = None
    registrations: FlowResult | None = None
    mixed: MixedResult | None = None
    peak_rss: int = 0
    processes: int = 0
    first_error: list[str] = field(default_factory=list)
    failed: str | None = None
    # workload -> [server CPU-seconds, operations]: requests, or completed flows
    cpu: dict[str, list[float]] = field(default_factory=dict)
    # workload -> per round, the busiest server process's share of the server's CPU
    busiest: dict[str, list[float]] = field(default_factory=dict)

    def add_cpu(self, workload: str, seconds: float, operations: int, busiest: float) -> None:
        totals = self.cpu.setdefault(workload, [0.0, 0])
        totals[0] += seconds
        totals[1] += operations
        if seconds > 0:
            self.busiest.setdefault(workload, []).append(busiest / seconds)

    def cpu_ms(self, workload: str) -> float | None:
        """Milliseconds of server CPU (all its processes and threads) per operation."""
        seconds, operations = self.cpu.get(workload, (0.0, 0))
        return 1000 * seconds / operations if operations else None

    @property
    def logged_in(self) -> HttpResult | None:
        return median_of_rounds(self.logged_in_rounds)

    @property
    def anonymous(self) -> HttpResult | None:
        return median_of_rounds(self.anonymous_rounds)

    @property
    def errors(self) -> int:
        total = sum(r.errors for r in self.logged_in_rounds + self.anonymous_rounds)
        total += sum(r.errors for rounds in self.pages.values() for r in rounds or [])
        for flows in (self.logins, self.registrations):
            total += flows.errors if flows is not None else 0
        if self.mixed is not None:
            total += self.mixed.errors + self.mixed.logins.errors
        return total


@dataclass
class Run:
    command: str
    settings: str
    machine: str
    hashes: str
    load_before: float
    results: dict[str, TargetResult] = field(default_factory=dict)
    argon2: Limit = field(default_factory=Limit)
    werkzeug: Limit = field(default_factory=Limit)
    peer: Limit = field(default_factory=Limit)  # FastAPI-Users' argon2id (pwdlib's defaults)
    cpu: CpuWindow = field(default_factory=CpuWindow)
    load_after: float = 0.0
    elapsed: float = 0.0  # seconds, the whole command

    def hash_limit(self, key: str) -> float:
        """The verify limit that bounds a target's logins: its own hash on 2 threads."""
        if key == "fastapi":
            return self.peer.rate
        return self.werkzeug.rate if key == "flask" else self.argon2.rate
