"""The report: one table of every target, and the targets as ratios of this run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from .load import FlowResult, HttpResult, median_of_rounds
from .results import TARGETS, Run, TargetResult


def _rate(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _pair(low: float, high: float) -> str:
    return f"{_ms(low)} / {_ms(high)}"


Cell = Callable[[Run, TargetResult], str | None]


def _http_rate(r: HttpResult | None) -> str | None:
    return _rate(r.rate) if r else None


def _http_latency(r: HttpResult | None) -> str | None:
    return _pair(r.p50_ms, r.p99_ms) if r else None


def _flows(r: FlowResult | None) -> str | None:
    return _rate(r.rate) if r else None


def _shares(shares: list[float] | None) -> str | None:
    return " ".join(f"{share:.0%}" for share in shares) if shares else None


def _cpu(t: TargetResult, workload: str) -> str | None:
    ms = t.cpu_ms(workload)
    return _ms(ms) if ms is not None else None


ROWS: list[tuple[str, Cell]] = [
    ("users in the table", lambda _, t: f"{t.users:,}" if t.users else None),
    ("logged-in GET /index/, req/s", lambda _, t: _http_rate(t.logged_in)),
    ("logged-in GET /index/, p50 / p99 ms", lambda _, t: _http_latency(t.logged_in)),
    ("anonymous GET /index/ (redirect), req/s", lambda _, t: _http_rate(t.anonymous)),
    ("anonymous GET /index/, p50 / p99 ms", lambda _, t: _http_latency(t.anonymous)),
    (
        "password verify limit, 2 threads, /s",
        lambda run, t: _rate(run.hash_limit(t.key)) if t.logins else None,
    ),
    ("logins/s, 8 clients (GET form + POST)", lambda _, t: _flows(t.logins)),
    ("registrations/s, 8 clients", lambda _, t: _flows(t.registrations)),
    ("server CPU per logged-in GET, ms", lambda _, t: _cpu(t, "logged-in")),
    (
        "logged-in GET: busiest worker's share of server CPU, by round",
        lambda _, t: _shares(t.busiest.get("logged-in")),
    ),
    ("server CPU per anonymous GET, ms", lambda _, t: _cpu(t, "anonymous")),
    ("server CPU per login (2 requests), ms", lambda _, t: _cpu(t, "logins")),
    ("server CPU per registration (2 requests), ms", lambda _, t: _cpu(t, "registrations")),
    (
        "mixed: GET /index/ at 20/s, p50 / p99 ms",
        lambda _, t: _pair(t.mixed.p50_ms, t.mixed.p99_ms) if t.mixed else None,
    ),
    (
        "mixed: logins/s of the 4 login clients",
        lambda _, t: _flows(t.mixed.logins if t.mixed else None),
    ),
    (
        "peak RSS, all server processes, MiB",
        lambda _, t: f"{t.peak_rss / 2**20:.0f} ({t.processes} proc)" if t.peak_rss else None,
    ),
    ("failed requests or flows", lambda _, t: str(t.errors)),
]


def _page_rows(run: Run) -> list[tuple[str, Cell]]:
    """A rate and a CPU row for each optional page that some target was asked for."""
    paths = sorted({path for t in run.results.values() for path in t.pages})

    def rate(path: str) -> Cell:
        def cell(_: Run, t: TargetResult) -> str | None:
            if path not in t.pages:
                return None
            rounds = t.pages[path]
            return "not present" if rounds is None else _http_rate(median_of_rounds(rounds))

        return cell

    def cpu(path: str) -> Cell:
        return lambda _, t: _cpu(t, f"page {path}")

    rows: list[tuple[str, Cell]] = []
    for path in paths:
        rows.append((f"anonymous GET {path}, req/s", rate(path)))
        rows.append((f"server CPU per GET {path}, ms", cpu(path)))
    return rows


def table(run: Run) -> str:
    keys = [key for key in TARGETS if key in run.results]
    headings = [
        f"quart_app SQLite, {run.results[key].users:,} users"
        if key == "sqlite_many"
        else TARGETS[key]
        for key in keys
    ]
    lines = ["| workload | " + " | ".join(headings) + " |", "|---" * (len(keys) + 1) + "|"]
    rows = ROWS[:-2] + _page_rows(run) + ROWS[-2:]
    for label, cell in rows:
        values = []
        for key in keys:
            result = run.results[key]
            value = cell(run, result)
            if result.failed and value in (None, "0"):
                value = "failed"
            values.append(value if value is not None else "")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


@dataclass
class Check:
    label: str
    value: float
    goal: str
    met: bool | None  # None: for information only


def _paired(
    a: TargetResult | None, b: TargetResult | None, get: Callable[[HttpResult], float]
) -> float | None:
    """The median over rounds of a/b, each round's two numbers taken minutes apart at most."""
    if a is None or b is None:
        return None
    ratios = [
        get(x) / get(y)
        for x, y in zip(a.logged_in_rounds, b.logged_in_rounds, strict=False)
        if get(y)
    ]
    return statistics.median(ratios) if ratios else None


def _paired_rounds(a: list[HttpResult], b: list[HttpResult]) -> float | None:
    """The median over rounds of a's req/s over b's."""
    ratios = [x.rate / y.rate for x, y in zip(a, b, strict=False) if y.rate]
    return statistics.median(ratios) if ratios else None


def checks(run: Run) -> list[Check]:
    """The targets, each a ratio of two numbers of this same run."""
    out: list[Check] = []

    def ok(key: str) -> TargetResult | None:
        result = run.results.get(key)
        return result if result is not None and result.failed is None else None

    def add(label: str, value: float | None, goal: str, test: str = "") -> None:
        if value is None or math.isnan(value):
            return
        low, _, high = test.partition(":")
        met = (not low or value >= float(low)) and (not high or value <= float(high))
        out.append(Check(label, value, goal, met if test else None))

    def ratio(num: float | None, den: float | None) -> float | None:
        if num is None or den is None or not den or math.isnan(den):
            return None
        return num / den

    def rate(t: TargetResult | None, name: str) -> float | None:
        flows = getattr(t, name, None) if t is not None else None
        return flows.rate if isinstance(flows, FlowResult) else None

    bare, flask, many, base = ok("bare"), ok("flask"), ok("sqlite_many"), ok("sqlite")
    for key, db_name, floor in (("sqlite", "SQLite", "0.6"), ("postgres", "PostgreSQL", "0.4")):
        t = ok(key)
        if t is None:
            continue
        add(
            f"logged-in GET, quart_app {db_name} / bare Quart",
            _paired(t, bare, lambda r: r.rate),
            f">= {floor}x",
            f"{floor}:",
        )
        add(
            f"logged-in GET by server CPU per request, bare Quart / quart_app {db_name}",
            ratio(
                bare.cpu_ms("logged-in") if bare else None,
                t.cpu_ms("logged-in"),
            ),
            "(information: the same, without Hypercorn's uneven rounds)",
        )
        add(
            f"mixed p99, quart_app {db_name} / Flask original",
            ratio(
                t.mixed.p99_ms if t.mixed else None,
                flask.mixed.p99_ms if flask and flask.mixed else None,
            ),
            "<= 0.2x",
            ":0.2",
        )
        limit = run.hash_limit(key)
        add(
            f"logins/s, quart_app {db_name} / argon2 limit",
            ratio(rate(t, "logins"), limit),
            ">= 0.8x",
            "0.8:",
        )
        add(
            f"registrations/s, quart_app {db_name} / argon2 limit",
            ratio(rate(t, "registrations"), limit),
            ">= 0.8x",
            "0.8:",
        )
        add(
            f"peak RSS, quart_app {db_name} / Flask original",
            ratio(t.peak_rss, flask.peak_rss if flask else None),
            "<= 1.0x",
            ":1.0",
        )
    if base is not None and flask is not None:
        for workload, name, get in (
            ("logged-in", "logged-in GET", "logged_in_rounds"),
            ("anonymous", "anonymous GET", "anonymous_rounds"),
        ):
            add(
                f"server CPU per {name}, quart_app SQLite / Flask original",
                ratio(base.cpu_ms(workload), flask.cpu_ms(workload)),
                "<= 1.0x",
                ":1.0",
            )
            add(
                f"{name} req/s, quart_app SQLite / Flask original",
                _paired_rounds(getattr(base, get), getattr(flask, get)),
                ">= 1.0x",
                "1.0:",
            )
    for t in (ok(key) for key in ("bare", "sqlite", "sqlite_many", "postgres")):
        shares = t.busiest.get("logged-in") if t is not None else None
        if t is not None and shares:
            add(
                f"logged-in GET, {TARGETS[t.key]}: rounds in which one worker took it all",
                float(sum(share >= 0.95 for share in shares)),
                "0 rounds (shown as x)",
                ":0",
            )
    if many is not None and base is not None:
        users = f"{many.users:,} / {base.users:,} users (SQLite)"
        add(
            f"logged-in GET, {users}",
            _paired(many, base, lambda r: r.rate),
            "0.9x to 1.1x",
            "0.9:1.1",
        )
        add(
            f"logins/s, {users}",
            ratio(rate(many, "logins"), rate(base, "logins")),
            "0.9x to 1.1x",
            "0.9:1.1",
        )
        for workload, name in (("logged-in", "logged-in GET"), ("logins", "login")):
            add(
                f"server CPU per {name}, {users}",
                ratio(many.cpu_ms(workload), base.cpu_ms(workload)),
                "(information: the same, without the noise)",
            )
    add(
        "logged-in GET, quart_app SQLite / Flask original",
        _paired(base, flask, lambda r: r.rate),
        "(information)",
    )
    peer = ok("fastapi")
    for key, db_name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        add(
            f"logged-in GET, quart_app {db_name} / FastAPI-Users",
            _paired(ok(key), peer, lambda r: r.rate),
            "(information)",
        )
    add(
        "server CPU per logged-in GET, FastAPI-Users / quart_app SQLite",
        ratio(
            peer.cpu_ms("logged-in") if peer else None, base.cpu_ms("logged-in") if base else None
        ),
        "(information: above 1, quart_app costs less)",
    )
    add(
        "logins/s, FastAPI-Users / its argon2 limit",
        ratio(rate(peer, "logins"), run.peer.rate),
        "(information)",
    )
    add(
        "logged-in GET, Flask original / bare Quart",
        _paired(flask, bare, lambda r: r.rate),
        "(information)",
    )
    add(
        "logins/s, Flask original / its werkzeug scrypt limit",
        ratio(rate(flask, "logins"), run.werkzeug.rate),
        "(information)",
    )
    return out


def render(run: Run) -> str:
    """The whole report, as Markdown that reads well in a terminal too."""
    cpu = run.cpu
    lines = [
        "## quart_app benchmark",
        "",
        f"- command: `{run.command}`",
        f"- machine: {run.machine}",
        f"- load average (1 min): {run.load_before:.2f} before, {run.load_after:.2f} after; "
        f"during the run other processes used {cpu.share(cpu.others):.0%} of the machine's "
        f"CPU (PostgreSQL {cpu.share(cpu.database):.0%}, hypervisor steal "
        f"{cpu.share(cpu.steal):.0%}), this benchmark and its servers {cpu.share(cpu.ours):.0%}",
        f"- settings: {run.settings}; the run took {run.elapsed / 60:.1f} min",
        f"- password verify limit (2 threads in the benchmark process, measured in each round "
        f"of the logins): {run.hashes}",
        "",
        table(run),
        "",
        "| target (ratios within this run) | ratio | goal | met |",
        "|---|---|---|---|",
    ]
    for check in checks(run):
        met = "-" if check.met is None else "yes" if check.met else "**no**"
        lines.append(f"| {check.label} | {check.value:.3f}x | {check.goal} | {met} |")
    errors = [
        f"- {TARGETS[key]}: {result.failed or result.first_error[0]}"
        for key, result in run.results.items()
        if result.failed or result.first_error
    ]
    if errors:
        lines += ["", "First failures:", *errors]
    return "\n".join(lines)
