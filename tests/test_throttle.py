"""Throttling: moving windows in-process, shared by the workers through a file or Redis."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from quart import Quart

import quart_app
from quart_app.config import DEFAULTS
from quart_app.throttle import Throttle, Throttled

from .conftest import PASSWORD, REDIS_URL, require
from .live_server import (
    LiveServers,
    live_servers_fixture,  # noqa: F401  (the live_servers fixture)
)


def make_app(instance: Path, **overrides: Any) -> Quart:
    """A bare app with only the throttle: several can share one process, as workers would."""
    app = Quart(__name__, instance_path=str(instance))
    app.config.update(DEFAULTS)
    app.config.update(overrides)
    Throttle(app)
    return app


def throttle_of(app: Quart) -> Throttle:
    return cast(Throttle, app.extensions["throttle"])


async def attempts(app: Quart, name: str, identifier: str, count: int) -> list[bool]:
    """Fire count attempts at once; True for each one that was allowed."""

    async def one() -> bool:
        try:
            await throttle_of(app).hit(name, identifier)
        except Throttled:
            return False
        return True

    async with app.app_context():
        return list(await asyncio.gather(*(one() for _ in range(count))))


@pytest.fixture
def redis_url() -> str:
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    assert REDIS_URL is not None
    return REDIS_URL


async def test_in_process_limit_holds_under_concurrency(tmp_path: Path) -> None:
    app = make_app(tmp_path, RATE_LIMITER_ENABLED=True, LOGIN_ATTEMPTS_PER_ADDRESS="5/minute")
    allowed = await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.1", 30)
    assert allowed.count(True) == 5
    # Another address has its own window.
    assert (await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.2", 1)) == [True]


async def test_throttled_carries_seconds_until_free(tmp_path: Path) -> None:
    app = make_app(tmp_path, RATE_LIMITER_ENABLED=True, REGISTRATIONS_PER_ADDRESS="1/hour")
    async with app.app_context():
        await throttle_of(app).hit("REGISTRATIONS_PER_ADDRESS", "10.0.0.3")
        with pytest.raises(Throttled) as caught:
            await throttle_of(app).hit("REGISTRATIONS_PER_ADDRESS", "10.0.0.3")
    assert 3500 <= caught.value.seconds <= 3600
    assert ("Retry-After", str(caught.value.seconds)) in caught.value.get_headers()


async def test_disabled_throttle_allows_everything(tmp_path: Path) -> None:
    app = make_app(tmp_path, RATE_LIMITER_ENABLED=False, LOGIN_ATTEMPTS_PER_ADDRESS="1/minute")
    allowed = await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.4", 10)
    assert all(allowed)


async def test_redis_limit_is_shared_between_apps_and_atomic(
    tmp_path: Path, redis_url: str
) -> None:
    """Two apps stand for two workers: one Lua-scripted window in Redis serves both."""
    limits = {"RATE_LIMITER_ENABLED": True, "LOGIN_ATTEMPTS_PER_ADDRESS": "6/minute"}
    first = make_app(tmp_path, REDIS_URL=redis_url, **limits)
    second = make_app(tmp_path, REDIS_URL=redis_url, **limits)
    address = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex}"
    results = await asyncio.gather(
        attempts(first, "LOGIN_ATTEMPTS_PER_ADDRESS", address, 15),
        attempts(second, "LOGIN_ATTEMPTS_PER_ADDRESS", address, 15),
    )
    assert sum(r.count(True) for r in results) == 6
    for app in (first, second):
        await throttle_of(app).close()


async def test_without_redis_the_workers_of_a_machine_share_one_file(tmp_path: Path) -> None:
    """Two apps on one instance folder stand for two workers: together they get the limit."""
    limits = {"RATE_LIMITER_ENABLED": True, "LOGIN_ATTEMPTS_PER_ADDRESS": "6/minute"}
    first = make_app(tmp_path, **limits)
    second = make_app(tmp_path, **limits)
    results = await asyncio.gather(
        attempts(first, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5", 15),
        attempts(second, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5", 15),
    )
    assert sum(r.count(True) for r in results) == 6
    assert (tmp_path / "throttle.sqlite3").exists()
    async with second.app_context():
        with pytest.raises(Throttled) as caught:
            await throttle_of(second).check("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5")
        assert 1 <= caught.value.seconds <= 60
        await throttle_of(first).clear("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5")
        await throttle_of(second).check("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5")
    for app in (first, second):
        await throttle_of(app).close()


async def test_in_memory_storage_counts_in_each_process_alone(tmp_path: Path) -> None:
    limits = {
        "RATE_LIMITER_ENABLED": True,
        "LOGIN_ATTEMPTS_PER_ADDRESS": "2/minute",
        "RATE_LIMIT_STORAGE": "memory",
    }
    first = make_app(tmp_path, **limits)
    second = make_app(tmp_path, **limits)
    assert (await attempts(first, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5", 3)).count(True) == 2
    assert (await attempts(second, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5", 3)).count(True) == 2
    assert not (tmp_path / "throttle.sqlite3").exists()


def test_an_unknown_storage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RATE_LIMIT_STORAGE"):
        make_app(tmp_path, RATE_LIMIT_STORAGE="memcached")


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7/32"),
        ("", ""),
        ("unix-socket", "unix-socket"),
    ],
)
def test_per_address_limits_count_networks(tmp_path: Path, address: str, network: str) -> None:
    assert throttle_of(make_app(tmp_path)).network(address) == network


def test_the_network_prefixes_are_configurable(tmp_path: Path) -> None:
    throttle = throttle_of(make_app(tmp_path, THROTTLE_IPV4_PREFIX=24, THROTTLE_IPV6_PREFIX=48))
    assert throttle.network("203.0.113.7") == "203.0.113.0/24"
    assert throttle.network("2001:db8:1:2::1") == "2001:db8:1::/48"


async def test_addresses_of_one_ipv6_64_share_one_limit(tmp_path: Path) -> None:
    """Seven addresses of one /64 get what one gets; another /64 and each IPv4 its own."""
    app = make_app(tmp_path, RATE_LIMITER_ENABLED=True, LOGIN_ATTEMPTS_PER_ADDRESS="10/minute")
    allowed = [
        (await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", f"2001:db8:5:6::{n}", 10)).count(True)
        for n in range(1, 8)
    ]
    assert sum(allowed) == 10
    other = await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "2001:db8:5:7::1", 10)
    assert other.count(True) == 10
    for n in range(1, 3):
        assert all(await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", f"198.51.100.{n}", 10))
    await throttle_of(app).close()


async def test_without_a_redis_url_the_throttle_needs_no_redis_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The module is loaded afresh while importing redis fails (None in sys.modules); the
    # original is put back afterwards, in sys.modules and on the package.
    for name in ("redis", "redis.asyncio"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "quart_app.throttle")
    monkeypatch.setattr(quart_app, "throttle", quart_app.throttle)
    fresh = importlib.import_module("quart_app.throttle")

    app = Quart(__name__, instance_path=str(tmp_path))
    app.config.update(DEFAULTS)
    app.config.update(RATE_LIMITER_ENABLED=True, LOGIN_ATTEMPTS_PER_ADDRESS="2/minute")
    throttle = fresh.Throttle(app)
    async with app.app_context():
        for _ in range(2):
            await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.6")
        with pytest.raises(fresh.Throttled):
            await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.6")
    await throttle.close()


@pytest.mark.server
def test_two_workers_without_redis_count_one_account_limit(live_servers: LiveServers) -> None:
    """Hypercorn's two workers share the file: 10 wrong passwords pass, not 20."""
    server = live_servers.start(env={"QUART_RATE_LIMITER_ENABLED": "true"})
    registered = httpx.post(
        server.url + "/api/register",
        json={"username": "alice", "password": PASSWORD},
        timeout=10,
    )
    assert registered.status_code == 201
    statuses = [
        # A new connection each time, so the workers take turns.
        httpx.post(
            server.url + "/api/login",
            json={"username": "alice", "password": PASSWORD + "!"},
            timeout=10,
        ).status_code
        for _ in range(20)
    ]
    assert statuses.count(401) == 10
    assert statuses.count(429) == 10
