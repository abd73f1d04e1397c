"""Throttling: moving windows in-process, and shared by every worker through Redis."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from typing import Any, cast

import pytest
from quart import Quart

import quart_app
from quart_app.config import DEFAULTS
from quart_app.throttle import Throttle, Throttled

from .conftest import REDIS_URL, require


def make_app(**overrides: Any) -> Quart:
    """A bare app with only the throttle: several can share one process, as workers would."""
    app = Quart(__name__)
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


async def test_in_process_limit_holds_under_concurrency() -> None:
    app = make_app(RATE_LIMITER_ENABLED=True, LOGIN_ATTEMPTS_PER_ADDRESS="5/minute")
    allowed = await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.1", 30)
    assert allowed.count(True) == 5
    # Another address has its own window.
    assert (await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.2", 1)) == [True]


async def test_throttled_carries_seconds_until_free() -> None:
    app = make_app(RATE_LIMITER_ENABLED=True, REGISTRATIONS_PER_ADDRESS="1/hour")
    async with app.app_context():
        await throttle_of(app).hit("REGISTRATIONS_PER_ADDRESS", "10.0.0.3")
        with pytest.raises(Throttled) as caught:
            await throttle_of(app).hit("REGISTRATIONS_PER_ADDRESS", "10.0.0.3")
    assert 3500 <= caught.value.seconds <= 3600
    assert ("Retry-After", str(caught.value.seconds)) in caught.value.get_headers()


async def test_disabled_throttle_allows_everything() -> None:
    app = make_app(RATE_LIMITER_ENABLED=False, LOGIN_ATTEMPTS_PER_ADDRESS="1/minute")
    allowed = await attempts(app, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.4", 10)
    assert all(allowed)


async def test_redis_limit_is_shared_between_apps_and_atomic(redis_url: str) -> None:
    """Two apps stand for two workers: one Lua-scripted window in Redis serves both."""
    limits = {"RATE_LIMITER_ENABLED": True, "LOGIN_ATTEMPTS_PER_ADDRESS": "6/minute"}
    first = make_app(REDIS_URL=redis_url, **limits)
    second = make_app(REDIS_URL=redis_url, **limits)
    address = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex}"
    results = await asyncio.gather(
        attempts(first, "LOGIN_ATTEMPTS_PER_ADDRESS", address, 15),
        attempts(second, "LOGIN_ATTEMPTS_PER_ADDRESS", address, 15),
    )
    assert sum(r.count(True) for r in results) == 6
    for app in (first, second):
        await throttle_of(app).close()


async def test_without_redis_each_process_counts_alone() -> None:
    limits = {"RATE_LIMITER_ENABLED": True, "LOGIN_ATTEMPTS_PER_ADDRESS": "2/minute"}
    first = make_app(**limits)
    second = make_app(**limits)
    assert (await attempts(first, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5", 3)).count(True) == 2
    assert (await attempts(second, "LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.5", 3)).count(True) == 2


async def test_without_a_redis_url_the_throttle_needs_no_redis_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The module is loaded afresh while importing redis fails (None in sys.modules); the
    # original is put back afterwards, in sys.modules and on the package.
    for name in ("redis", "redis.asyncio"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "quart_app.throttle")
    monkeypatch.setattr(quart_app, "throttle", quart_app.throttle)
    fresh = importlib.import_module("quart_app.throttle")

    app = Quart(__name__)
    app.config.update(DEFAULTS)
    app.config.update(RATE_LIMITER_ENABLED=True, LOGIN_ATTEMPTS_PER_ADDRESS="2/minute")
    throttle = fresh.Throttle(app)
    async with app.app_context():
        for _ in range(2):
            await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.6")
        with pytest.raises(fresh.Throttled):
            await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", "10.0.0.6")
    await throttle.close()
