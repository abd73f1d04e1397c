"""Session events: an end (with its reason) or a change, carried to every worker.

Three carriers, each where it is needed:

- every worker of one machine shares a ring of recent events in a file of the instance
  folder, mapped into memory, which each worker polls (the default deployment: several
  Hypercorn workers, no Redis);
- with Redis, every worker of every machine subscribes to one channel;
- with PostgreSQL and no Redis, every worker LISTENs on one channel, and the event is
  NOTIFYed in the transaction that ended the session.

A worker hands what it hears to its own sockets and to its observers (the session cache).
An observer is told whether the carrier between machines is up: what is said while it is
down is lost, so nothing kept in memory may be trusted then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import socket
import struct
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from quart import Quart, current_app

from .. import compat
from .mapped import MappedFile

if TYPE_CHECKING:
    import asyncpg
    from redis.asyncio import Redis
    from tortoise.backends.base.client import BaseDBAsyncClient

logger = logging.getLogger(__name__)

CHANNEL = "quart_app:session-ended"
PG_CHANNEL = "quart_app_session_events"
RING_FILE = "session-events"
POLL_INTERVAL = 0.1
# Told to a socket when events may have been missed: read the session again.
RECHECK = ""
# Why a session ended, as its sockets are told (the login page explains each). None: changed.
REASONS: tuple[str | None, ...] = (
    None,
    "logout",
    "expired",
    "ended_elsewhere",
    "password_changed",
    "password_reset",
    "protection",
    "disabled",
    "session_limit",
)


@dataclass(frozen=True)
class Event:
    """Sessions of one user ended (reason) or changed (None): some, or all but `keep`."""

    user_id: int
    session_ids: tuple[int, ...] = ()
    every: bool = False
    keep: int | None = None
    reason: str | None = None

    def concerns(self, session_id: int) -> bool:
        """Whether this event is about session_id (a session of user_id)."""
        if self.every:
            return session_id != self.keep
        return session_id in self.session_ids

    def to_json(self) -> str:
        return json.dumps(
            [self.user_id, list(self.session_ids), self.every, self.keep, self.reason]
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> Event:
        user_id, ids, every, keep, reason = json.loads(data)
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        return cls(int(user_id), tuple(int(i) for i in ids), bool(every), keep, reason)


class Observer(Protocol):
    """Told every event this worker hears, and whether events from other machines arrive."""

    def heard(self, event: Event) -> None: ...

    def hearing(self, subscribed: bool) -> None: ...

    def clear(self) -> None: ...


# The ring: a header (the number of the last event written), then SLOTS entries of
# (number, writer, reason, every, user id, session id or kept id).
HEADER = struct.Struct("<Q")
ENTRY = struct.Struct("<QIBBxxqq")
SLOTS = 4096
NO_ID = -1


class Ring(MappedFile):
    """The events of this machine's workers, shared through a file mapped into memory."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, HEADER.size + SLOTS * ENTRY.size)
        self.seen = self.head()
        # Who wrote an entry, so a worker skips its own (it delivered them already).
        self.writer = secrets.randbits(32)

    def head(self) -> int:
        return int(HEADER.unpack_from(self.map, 0)[0])

    def write(self, event: Event) -> None:
        entries = self._entries(event)
        with self.locked():
            number = self.head()
            for reason, every, user_id, session_id in entries:
                number += 1
                offset = HEADER.size + (number % SLOTS) * ENTRY.size
                ENTRY.pack_into(
                    self.map, offset, number, self.writer, reason, every, user_id, session_id
                )
            HEADER.pack_into(self.map, 0, number)

    def read_new(self) -> tuple[list[Event], bool]:
        """Events written by other processes since the last call; True when some were lost."""
        head = self.head()
        lost = head - self.seen > SLOTS
        first = max(self.seen + 1, head - SLOTS + 1)
        events = []
        for number in range(first, head + 1):
            offset = HEADER.size + (number % SLOTS) * ENTRY.size
            written, writer, reason, every, user_id, session_id = ENTRY.unpack_from(
                self.map, offset
            )
            if written != number:
                lost = True  # overwritten while we read: a lap behind
                continue
            if writer == self.writer:
                continue
            events.append(_event_of(reason, every, user_id, session_id))
        self.seen = head
        return events, lost

    @staticmethod
    def _entries(event: Event) -> Iterator[tuple[int, int, int, int]]:
        reason = REASONS.index(event.reason)
        if event.every:
            yield reason, 1, event.user_id, NO_ID if event.keep is None else event.keep
        for session_id in event.session_ids:
            yield reason, 0, event.user_id, session_id


def _event_of(reason: int, every: int, user_id: int, session_id: int) -> Event:
    if every:
        keep = None if session_id == NO_ID else session_id
        return Event(user_id, every=True, keep=keep, reason=REASONS[reason])
    return Event(user_id, (session_id,), reason=REASONS[reason])


class SessionEvents:
    """Publish session events, and hand every event heard to sockets and observers."""

    def __init__(self, app: Quart | None = None) -> None:
        self._waiters: defaultdict[int, set[asyncio.Queue[str]]] = defaultdict(set)
        self._observers: list[Observer] = []
        self._redis: Redis | None = None
        self._postgres_dsn: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ring: Ring | None = None
        self._ring_failed = False
        # A duplicate of the LISTEN connection's socket, while it is up (see all_heard).
        self._listen_socket: socket.socket | None = None
        self.channel = CHANNEL
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        app.extensions["session_events"] = self
        database = str(app.config["DATABASE_URL"])
        # Session ids are per database: apps on other databases sharing this Redis (Redis
        # pub/sub ignores database numbers) must not hear each other's events.
        self.channel = f"{CHANNEL}:{hashlib.sha256(database.encode()).hexdigest()[:16]}"
        if app.config["REDIS_URL"]:
            from redis.asyncio import Redis  # only deployments with Redis load it

            self._redis = Redis.from_url(app.config["REDIS_URL"])
        elif database.startswith(("postgres://", "postgresql://", "asyncpg://")):
            self._postgres_dsn = _asyncpg_dsn(database)
        app.before_serving(self._start)
        app.after_serving(self._stop)

    @property
    def between_machines(self) -> bool:
        """Whether events also travel to other machines (Redis, or PostgreSQL)."""
        return self._redis is not None or self._postgres_dsn is not None

    @property
    def listens_to_database(self) -> bool:
        """Whether events between machines come by LISTEN from the database itself."""
        return self._redis is None and self._postgres_dsn is not None

    def all_heard(self) -> bool:
        """False while PostgreSQL may have said something this worker has not read yet.

        With LISTEN on the database, a NOTIFY of an end or a change, and the end of the
        connection when the server goes away, are bytes waiting on its socket before asyncpg
        reads them: copies must not be served while any are. One non-blocking peek.
        """
        if not self.listens_to_database:
            return True
        sock = self._listen_socket
        if sock is None:
            return False
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # nothing unread
        except OSError:
            return False
        return False  # unread bytes, or the end of the connection

    def observe(self, observer: Observer) -> None:
        self._observers.append(observer)

    async def within(self, connection: BaseDBAsyncClient, event: Event) -> None:
        """Inside the transaction that made the change: NOTIFY, sent when it commits."""
        if self._postgres_dsn is not None:
            await connection.execute_query(
                "SELECT pg_notify($1, $2)", [PG_CHANNEL, event.to_json()]
            )

    async def publish(self, event: Event) -> None:
        """After the change is committed: this process, this machine, and Redis."""
        self._deliver(event)
        ring = self._open_ring()
        if ring is not None:
            ring.write(event)
        if self._redis is None:
            return
        from redis.exceptions import RedisError

        try:
            await self._redis.publish(self.channel, event.to_json())
        except RedisError:
            # The change is in the database whatever happens here; this machine has heard.
            logger.warning("could not publish a session event to Redis", exc_info=True)

    def subscribe(self, session_id: int) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiters[session_id].add(queue)
        return queue

    def unsubscribe(self, session_id: int, queue: asyncio.Queue[str]) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(queue)
            if not waiters:
                del self._waiters[session_id]

    def _deliver(self, event: Event) -> None:
        for observer in self._observers:
            observer.heard(event)
        if event.reason is None:
            return
        for session_id, queues in list(self._waiters.items()):
            if event.concerns(session_id):
                for queue in queues:
                    queue.put_nowait(event.reason)

    def _open_ring(self) -> Ring | None:
        """The machine's ring, opened on first use (the instance folder is known by then)."""
        if self._ring is None and not self._ring_failed:
            folder = Path(current_app.instance_path)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._ring = Ring(folder / RING_FILE)
            except OSError as error:
                # Sockets on other workers then learn of an end only at their deadline.
                self._ring_failed = True
                logger.warning("session events: cannot use %s: %s", folder / RING_FILE, error)
        return self._ring

    async def _start(self) -> None:
        self._open_ring()
        self._tasks.append(asyncio.create_task(self._poll_ring()))
        if self._redis is None and self._postgres_dsn is None:
            return
        ready = asyncio.Event()
        listen = self._listen_redis if self._redis is not None else self._listen_postgres
        self._tasks.append(asyncio.create_task(listen(ready)))
        await asyncio.wait_for(ready.wait(), timeout=10)

    async def _poll_ring(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if self._ring is None:
                continue
            events, lost = self._ring.read_new()
            for event in events:
                self._deliver(event)
            if lost:
                # Too many at once to tell which: every copy goes, every socket rechecks.
                logger.warning("session events: the ring overflowed; copies dropped")
                for observer in self._observers:
                    observer.clear()
                for queues in self._waiters.values():
                    for queue in queues:
                        queue.put_nowait(RECHECK)

    async def _listen_redis(self, ready: asyncio.Event) -> None:
        from redis.exceptions import RedisError

        assert self._redis is not None
        delay = 0.5
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._hearing(True)
                    ready.set()
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._heard_remote(message["data"])
            except asyncio.CancelledError:
                self._hearing(False)
                raise
            except (RedisError, OSError):
                self._hearing(False)
                logger.warning("session events: Redis subscription lost, retrying")
                ready.set()  # serve without events from other machines rather than not at all
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _listen_postgres(self, ready: asyncio.Event) -> None:
        import asyncpg

        assert self._postgres_dsn is not None
        delay = 0.5
        while True:
            connection: asyncpg.Connection[Any] | None = None
            try:
                connection = await asyncpg.connect(self._postgres_dsn, timeout=5)
                lost = asyncio.Event()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(PG_CHANNEL, self._on_notify)
                self._listen_socket = compat.asyncpg_socket(connection)
                self._hearing(True)
                ready.set()
                delay = 0.5
                await _until_lost(connection, lost)
            except asyncio.CancelledError:
                self._hearing(False)
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                pass
            finally:
                self._close_listen_socket()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.terminate()
            self._hearing(False)
            logger.warning("session events: PostgreSQL LISTEN connection lost, retrying")
            ready.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _close_listen_socket(self) -> None:
        sock, self._listen_socket = self._listen_socket, None
        if sock is not None:
            sock.close()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        self._heard_remote(str(payload))

    def _heard_remote(self, data: str | bytes) -> None:
        try:
            event = Event.from_json(data)
        except (ValueError, TypeError, KeyError):
            logger.warning("session events: ignored a malformed event")
            return
        self._deliver(event)

    def _hearing(self, subscribed: bool) -> None:
        for observer in self._observers:
            observer.hearing(subscribed)

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
        if self._ring is not None:
            self._ring.close()
            self._ring = None


def _setter(event: asyncio.Event) -> Any:
    return lambda _connection: event.set()


async def _until_lost(connection: asyncpg.Connection[Any], lost: asyncio.Event) -> None:
    """Return when the LISTEN connection is gone: closed, or silent to a ping."""
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), timeout=5)
        if not lost.is_set():
            await connection.fetchval("SELECT 1", timeout=5)


def _asyncpg_dsn(database_url: str) -> str:
    """The DSN asyncpg takes for a Tortoise URL (no Tortoise-only query options)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


def session_events() -> SessionEvents:
    return cast(SessionEvents, current_app.extensions["session_events"])
