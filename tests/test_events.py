"""Session events: in-process, between the workers of a machine, through Redis or PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from quart import Quart

from quart_app.config import DEFAULTS
from quart_app.sessions.events import PG_CHANNEL, RECHECK, SLOTS, Event, SessionEvents

from .conftest import POSTGRES_URL, REDIS_URL, USE_POSTGRES, require


def bare_app(folder: Path, redis_url: str | None = None, database: str | None = None) -> Quart:
    app = Quart(__name__, instance_path=str(folder))
    app.config.update(DEFAULTS)
    app.config["REDIS_URL"] = redis_url
    app.config["DATABASE_URL"] = database or "sqlite://:memory:"
    return app


class Worker:
    """One app standing for one worker: its events started as Hypercorn would."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.events = SessionEvents(app)

    async def publish(self, event: Event) -> None:
        async with self.app.app_context():
            await self.events.publish(event)


@pytest.fixture
async def start() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        async with worker.app.app_context():
            await worker.events._stop()


async def started(workers: list[Worker], app: Quart) -> Worker:
    worker = Worker(app)
    async with app.app_context():
        await worker.events._start()
    workers.append(worker)
    return worker


async def heard(queue: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(queue.get(), 3)


def test_an_event_concerns_the_sessions_it_names() -> None:
    one = Event(1, (5, 6), reason="logout")
    assert [one.concerns(n) for n in (5, 6, 7)] == [True, True, False]
    others = Event(1, every=True, keep=5, reason="ended_elsewhere")
    assert [others.concerns(n) for n in (5, 6)] == [False, True]
    assert Event.from_json(others.to_json()) == others


@pytest.mark.parametrize("data", ["[]", "{}", '[1, [], false, null, "made-up"]', "x"])
def test_a_malformed_event_is_refused(data: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        Event.from_json(data)


async def test_in_process_delivery(tmp_path: Path) -> None:
    worker = Worker(bare_app(tmp_path))
    mine, other = worker.events.subscribe(1), worker.events.subscribe(2)
    await worker.publish(Event(10, (1,), reason="logout"))
    assert await heard(mine) == "logout"
    assert other.empty()
    await worker.publish(Event(10, (1,)))  # changed, not ended: for the session caches only
    assert mine.empty()
    worker.events.unsubscribe(1, mine)
    await worker.publish(Event(10, (1,), reason="logout"))
    assert mine.empty()


async def test_workers_of_one_machine_hear_each_other_without_redis(
    tmp_path: Path, start: list[Worker]
) -> None:
    """The default deployment: the ring in the instance folder carries the event."""
    first = await started(start, bare_app(tmp_path))
    second = await started(start, bare_app(tmp_path))
    queue, kept = second.events.subscribe(42), second.events.subscribe(43)
    await first.publish(Event(7, every=True, keep=43, reason="password_changed"))
    assert await heard(queue) == "password_changed"
    assert kept.empty()


async def test_a_lap_lost_on_the_ring_makes_every_socket_recheck(
    tmp_path: Path, start: list[Worker]
) -> None:
    first = await started(start, bare_app(tmp_path))
    second = await started(start, bare_app(tmp_path))
    queue = second.events.subscribe(1)
    async with first.app.app_context():
        for n in range(SLOTS + 10):  # faster than the other worker polls
            await first.events.publish(Event(2, (1000 + n,), reason="logout"))
    assert await heard(queue) == RECHECK


async def test_event_reaches_another_machine_through_redis(
    tmp_path: Path, start: list[Worker]
) -> None:
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    first = await started(start, bare_app(tmp_path / "a", REDIS_URL))
    second = await started(start, bare_app(tmp_path / "b", REDIS_URL))
    queue = second.events.subscribe(42)
    await first.publish(Event(1, (42, 43), reason="password_changed"))
    assert await heard(queue) == "password_changed"


async def test_unreachable_redis_still_tells_local_sockets(tmp_path: Path) -> None:
    worker = Worker(bare_app(tmp_path, "redis://127.0.0.1:1/0"))  # nothing listens on port 1
    queue = worker.events.subscribe(5)
    await worker.publish(Event(1, (5,), reason="logout"))
    assert queue.get_nowait() == "logout"
    assert worker.events._redis is not None
    await worker.events._redis.aclose()


async def test_apps_on_other_databases_do_not_hear_each_other(
    tmp_path: Path, start: list[Worker]
) -> None:
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    first = await started(start, bare_app(tmp_path / "a", REDIS_URL))
    second = await started(start, bare_app(tmp_path / "b", REDIS_URL, "postgres://elsewhere/other"))
    queue = second.events.subscribe(9)
    await first.publish(Event(1, (9,), reason="logout"))
    await asyncio.sleep(0.5)
    assert queue.empty()


@pytest.fixture
def postgres_url() -> str:
    if not USE_POSTGRES:
        pytest.skip("runs in the PostgreSQL pass")
    require(POSTGRES_URL is not None, "QUART_TEST_POSTGRES_URL is not set")
    assert POSTGRES_URL is not None
    return POSTGRES_URL


async def test_event_reaches_another_machine_through_postgres(
    tmp_path: Path, start: list[Worker], postgres_url: str
) -> None:
    """No Redis: NOTIFY, sent in the transaction, reaches every LISTENing worker."""
    first = await started(start, bare_app(tmp_path / "a", database=postgres_url))
    second = await started(start, bare_app(tmp_path / "b", database=postgres_url))
    queue = second.events.subscribe(77)
    connection = await asyncpg.connect(postgres_url.replace("postgres://", "postgresql://", 1))
    try:
        async with connection.transaction():
            await connection.execute(
                "SELECT pg_notify($1, $2)",
                "quart_app_session_events",
                Event(3, (77,), reason="ended_elsewhere").to_json(),
            )
            await asyncio.sleep(0.3)
            assert queue.empty()  # not before the transaction commits
        assert await heard(queue) == "ended_elsewhere"
    finally:
        await connection.close()
    assert first.events.between_machines


async def test_a_lost_listen_connection_is_noticed_and_recovered(
    tmp_path: Path, start: list[Worker], postgres_url: str
) -> None:
    states: list[bool] = []

    class Ear:
        def heard(self, event: Event) -> None: ...

        def hearing(self, subscribed: bool) -> None:
            states.append(subscribed)

        def clear(self) -> None: ...

    app = bare_app(tmp_path, database=postgres_url)
    worker = Worker(app)
    worker.events.observe(Ear())
    async with app.app_context():
        await worker.events._start()
    start.append(worker)
    assert states == [True]
    admin = await asyncpg.connect(postgres_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    for _ in range(100):
        if states[-2:] == [False, True]:
            break
        await asyncio.sleep(0.05)
    assert states[-2:] == [False, True]


def _from_another_thread(url: str, sql: str, *args: str) -> None:
    """Run sql on a connection of another thread while this thread's event loop is held,
    then give the server a moment: whatever it sends the LISTEN connection stays unread."""

    async def run() -> None:
        connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            await connection.execute(sql, *args)
        finally:
            await connection.close()

    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(timeout=30)
    time.sleep(0.3)


async def until_all_heard(events: SessionEvents) -> bool:
    for _ in range(250):
        if events.all_heard():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_unread_notify_or_end_of_the_listen_connection_is_seen(
    tmp_path: Path, start: list[Worker], postgres_url: str
) -> None:
    """What the session cache asks before serving a copy: has PostgreSQL said anything unread?"""
    worker = await started(start, bare_app(tmp_path, database=postgres_url))
    events = worker.events
    assert events.listens_to_database
    assert events.all_heard()
    payload = Event(3, (77,), reason="logout").to_json()
    _from_another_thread(postgres_url, "SELECT pg_notify($1, $2)", PG_CHANNEL, payload)
    assert not events.all_heard()  # the NOTIFY waits on the socket
    assert await until_all_heard(events)  # read and delivered
    _from_another_thread(
        postgres_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        " AND pid <> pg_backend_pid()",
    )
    assert not events.all_heard()  # the server's goodbye, unread: the database is asked
    assert await until_all_heard(events)  # a new LISTEN connection


def test_all_heard_without_listen() -> None:
    """Only LISTEN on the database is peeked at; other carriers say it with `hearing`."""
    app = Quart(__name__)
    app.config.update(DEFAULTS)
    app.config["DATABASE_URL"] = "sqlite://:memory:"
    events = SessionEvents(app)
    assert not events.listens_to_database
    assert events.all_heard()
