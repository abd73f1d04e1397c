"""Session-ended events: delivered in-process, and between workers through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from quart import Quart

from quart_app.config import DEFAULTS
from quart_app.events import SessionEvents

from .conftest import REDIS_URL, require


def bare_app(redis_url: str | None) -> Quart:
    app = Quart(__name__)
    app.config.update(DEFAULTS)
    app.config["REDIS_URL"] = redis_url
    return app


@pytest.fixture
async def workers() -> AsyncIterator[tuple[SessionEvents, SessionEvents]]:
    """Two apps standing for two workers, both subscribed to Redis."""
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    first, second = SessionEvents(bare_app(REDIS_URL)), SessionEvents(bare_app(REDIS_URL))
    for events in (first, second):
        await events._start()
    yield first, second
    for events in (first, second):
        await events._stop()


async def test_in_process_delivery() -> None:
    events = SessionEvents(bare_app(None))
    mine, other = events.subscribe(1), events.subscribe(2)
    await events.publish([1], "logout")
    assert await asyncio.wait_for(mine.get(), 1) == "logout"
    assert other.empty()
    await events.publish([1], None)  # changed, not ended: for the session caches only
    assert mine.empty()
    events.unsubscribe(1, mine)
    await events.publish([1], "logout")
    assert mine.empty()


async def test_event_reaches_another_worker_through_redis(
    workers: tuple[SessionEvents, SessionEvents],
) -> None:
    first, second = workers
    queue = second.subscribe(42)
    await first.publish([42, 43], "password_changed")
    assert await asyncio.wait_for(queue.get(), 2) == "password_changed"


async def test_publishing_nothing_sends_nothing(
    workers: tuple[SessionEvents, SessionEvents],
) -> None:
    first, second = workers
    queue = second.subscribe(7)
    await first.publish([], "logout")
    await first.publish([8], "logout")
    await asyncio.sleep(0.2)
    assert queue.empty()


async def test_unreachable_redis_still_tells_local_sockets() -> None:
    events = SessionEvents(bare_app("redis://127.0.0.1:1/0"))  # nothing listens on port 1
    queue = events.subscribe(5)
    await events.publish([5], "logout")
    assert queue.get_nowait() == "logout"
    assert events._redis is not None
    await events._redis.aclose()


async def test_apps_on_other_databases_do_not_hear_each_other() -> None:
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    apps = [bare_app(REDIS_URL), bare_app(REDIS_URL)]
    apps[1].config["DATABASE_URL"] = "postgres://elsewhere/other"
    first, second = SessionEvents(apps[0]), SessionEvents(apps[1])
    for events in (first, second):
        await events._start()
    try:
        queue = second.subscribe(9)
        await first.publish([9], "logout")
        await asyncio.sleep(0.3)
        assert queue.empty()
    finally:
        for events in (first, second):
            await events._stop()
