"""Sessions kept in each worker's memory: used while good, dropped the moment they change."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import sessions
from quart_app.config import DEFAULTS
from quart_app.models import AuthSession, User
from quart_app.sessions.cache import BOARD_FILE, DEFAULT_SIZE, Board, SessionCache
from quart_app.sessions.events import Event, SessionEvents

from .conftest import REDIS_URL, AppFactory, AuthActions, require
from .test_login import queries_of


def key_hash(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def signed_in(n: int, last_seen: datetime | None = None) -> tuple[AuthSession, User]:
    """A session of user n and the user, as one read gives them; nothing is saved."""
    user = User(id=n, username=f"user{n}", username_key=f"user{n}", password_hash="x")
    session = AuthSession(
        id=n,
        key_hash=key_hash(n),
        user_id=n,
        last_seen_at=last_seen or datetime.now(UTC),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    return session, user


def worker(app: Quart, size: int = DEFAULT_SIZE) -> SessionCache:
    """Another worker of app's deployment: its own memory, the same instance folder."""
    cache = SessionCache()
    cache.size = size
    cache.max_age = app.config["SESSION_TOUCH_INTERVAL"]
    return cache


def remember(cache: SessionCache, found: tuple[AuthSession, User]) -> None:
    """Read a session twice, as a worker does: the first read tells whose key it is."""
    session, user = found
    cache.learn(session.key_hash, user.id)
    cache.put(session.key_hash, session, user, cache.count(session.key_hash))


@pytest.mark.parametrize(
    ("database", "redis", "size"),
    [
        ("sqlite://:memory:", None, DEFAULT_SIZE),
        # Copies served only while LISTEN on that same database hears everything.
        ("postgres://u@127.0.0.1:5432/db", None, DEFAULT_SIZE),
        # Redis says nothing of the database being up: off unless asked for.
        ("postgres://u@127.0.0.1:5432/db", "redis://127.0.0.1:6379/0", 0),
    ],
)
def test_on_by_default_where_an_outage_still_fails_closed(
    database: str, redis: str | None, size: int
) -> None:
    """A database server can fail while the app runs: every request must then be a 503."""
    app = Quart(__name__)
    app.config.update(DEFAULTS)
    app.config["DATABASE_URL"] = database
    app.config["REDIS_URL"] = redis
    SessionEvents(app)
    assert SessionCache(app).size == size
    app.config["SESSION_CACHE_SIZE"] = 10
    assert SessionCache(app).size == 10


async def test_counters_are_shared_through_the_file(tmp_path: Path) -> None:
    first, second = Board(tmp_path / BOARD_FILE), Board(tmp_path / BOARD_FILE)
    slot = Board.slot(1)
    before = second.read(slot)
    first.bump([slot, slot])
    assert second.read(slot) == before + 1
    first.close()
    second.close()


async def test_a_change_on_one_worker_drops_the_copies_of_the_others(app: Quart) -> None:
    async with app.app_context():
        one, other = worker(app), worker(app)
        found = signed_in(1)
        remember(one, found)
        remember(other, signed_in(1))
        assert one.get(key_hash(1)) == found
        other.changed([1])
        assert one.get(key_hash(1)) is None
        assert other.get(key_hash(1)) is None
        # Other users keep their copies.
        remember(one, signed_in(2))
        other.changed([3])
        assert one.get(key_hash(2)) is not None


async def test_a_key_read_once_is_not_kept_until_its_user_is_known(app: Quart) -> None:
    """The count must be read before the database, and it is the user's."""
    async with app.app_context():
        cache = worker(app)
        assert cache.count(key_hash(1)) is None
        session, user = signed_in(1)
        cache.put(key_hash(1), session, user, None)
        assert cache.get(key_hash(1)) is None
        assert cache.count(key_hash(1)) is not None


async def test_a_change_during_the_read_spoils_the_copy(app: Quart) -> None:
    async with app.app_context():
        one, other = worker(app), worker(app)
        one.learn(key_hash(1), 1)
        count = one.count(key_hash(1))  # taken before the database is read
        other.changed([1])  # the session ends meanwhile
        one.put(key_hash(1), *signed_in(1), count)
        assert one.get(key_hash(1)) is None


async def test_copies_are_dropped_when_last_seen_is_due(app: Quart) -> None:
    async with app.app_context():
        cache = worker(app)
        due = datetime.now(UTC) - timedelta(seconds=app.config["SESSION_TOUCH_INTERVAL"])
        remember(cache, signed_in(1, last_seen=due))
        assert cache.get(key_hash(1)) is None


async def test_the_cache_is_bounded(app: Quart) -> None:
    async with app.app_context():
        cache = worker(app, size=2)
        for n in (1, 2, 3):
            remember(cache, signed_in(n))
        assert cache.get(key_hash(1)) is None
        assert cache.get(key_hash(2)) is not None
        assert cache.get(key_hash(3)) is not None


async def test_with_redis_copies_only_while_subscribed(app: Quart) -> None:
    async with app.app_context():
        cache = worker(app)
        cache.needs_events = True
        remember(cache, signed_in(1))
        assert cache.get(key_hash(1)) is None  # not hearing the other machines yet
        cache.hearing(True)
        remember(cache, signed_in(1))
        assert cache.get(key_hash(1)) is not None
        cache.heard(Event(1, (1,), reason="logout"))
        assert cache.get(key_hash(1)) is None
        remember(cache, signed_in(1))
        cache.hearing(False)  # what is said while away is lost: nothing is trusted
        assert cache.get(key_hash(1)) is None


@pytest.mark.parametrize("reason", ["logout", None])
async def test_an_event_from_another_machine_drops_the_copy(
    tmp_path: Path, reason: str | None
) -> None:
    """An end (a reason) or a change such as freshness lost (None) reaches every machine."""
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    apps = []
    for name in ("a", "b"):  # two machines: two instance folders
        app = Quart(__name__, instance_path=str(tmp_path / name))
        app.config.update(DEFAULTS)
        app.config["REDIS_URL"] = REDIS_URL
        app.config["DATABASE_URL"] = "sqlite://:memory:"
        apps.append(app)
    sender, receiver = SessionEvents(apps[0]), SessionEvents(apps[1])
    cache = SessionCache(apps[1])
    assert cache.needs_events
    for app, events in zip(apps, (sender, receiver), strict=True):
        async with app.app_context():
            await events._start()
    try:
        assert cache.hearing_events
        found = signed_in(5)
        async with apps[1].app_context():
            remember(cache, found)
        assert cache.get(key_hash(5)) == found
        socket = receiver.subscribe(5)
        async with apps[0].app_context():
            await sender.publish(Event(5, (5,), reason=reason))
        for _ in range(100):
            if cache.get(key_hash(5)) is None:
                break
            await asyncio.sleep(0.02)
        assert cache.get(key_hash(5)) is None
        # A socket is told of an end, and never of a mere change.
        assert socket.empty() is (reason is None)
    finally:
        for app, events in zip(apps, (sender, receiver), strict=True):
            async with app.app_context():
                await events._stop()
        await cache.close()


async def test_without_a_writable_instance_folder_every_request_is_read(
    make_app: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app(SESSION_CACHE_SIZE=DEFAULT_SIZE)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    app.instance_path = str(blocker / "instance")  # cannot be made: a file is in the way
    client: Client = app.test_client()
    await AuthActions(client).register()
    for attempt in range(3):
        queries = await queries_of(client, caplog, "/index/")
        assert len(queries) == 1, queries
        assert "sessions" in queries[0]
        if attempt == 0:
            assert "session cache off" in caplog.text


async def test_a_change_of_freshness_is_heard_by_other_machines(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """Not an end, so no socket is told; but copies elsewhere must not stay fresh."""
    require(REDIS_URL is not None, "QUART_TEST_REDIS_URL is not set")
    app = await make_app(REDIS_URL=REDIS_URL)
    elsewhere = Quart(__name__, instance_path=str(tmp_path / "elsewhere"))
    elsewhere.config.update(DEFAULTS)
    elsewhere.config.update(REDIS_URL=REDIS_URL, DATABASE_URL=app.config["DATABASE_URL"])
    heard: list[Event] = []

    class Ear:
        def heard(self, event: Event) -> None:
            heard.append(event)

        def hearing(self, subscribed: bool) -> None:
            pass

        def clear(self) -> None:
            pass

    events = SessionEvents(elsewhere)
    events.observe(Ear())
    async with elsewhere.app_context():
        await events._start()
    try:
        await AuthActions(app.test_client()).register()
        row = await AuthSession.get()
        async with app.app_context():
            await sessions.set_fresh(row, False)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard == [Event(row.user_id, (row.id,))]
    finally:
        async with elsewhere.app_context():
            await events._stop()
