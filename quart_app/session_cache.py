"""Each worker's copies of the sessions it served lately, so most requests skip the database.

A copy is used only while nothing has ended or changed its session since it was read:

- every process of the deployment on this machine shares a board of counters (a small
  file in the instance folder, mapped into memory); ending or changing a session bumps its
  counter before the response that did it is sent, and a copy read under an older count is
  dropped. So a logout on one worker holds on every other worker from the next request.
- with Redis, workers on other machines drop their copies when the event of the end or
  change reaches them, on the channel live logout already uses; while their subscription
  is down they use no copies at all.
- a copy is also dropped once its session is due to have last_seen written again
  (SESSION_TOUCH_INTERVAL), so every worker still reads the row that often.

A session ended by writing to the database directly (not through the app, its API or its
commands) is noticed by the workers within SESSION_TOUCH_INTERVAL.

By default the cache is on for SQLite only. A database server can go away while the app
runs; every request must then fail closed with a 503, which a page served from memory
would not. SESSION_CACHE_SIZE turns it on for PostgreSQL too, for those who prefer that
logged-in pages keep working through a short outage.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from quart import Quart, current_app

if TYPE_CHECKING:
    from .events import SessionEvents
    from .models import AuthSession, User

logger = logging.getLogger(__name__)

BOARD_FILE = "session-counters"
SLOTS = 8192
COUNTER = struct.Struct("<Q")
DEFAULT_SIZE = 4096


class Board:
    """Counters shared by the processes that map the same file; a session has one slot."""

    def __init__(self, path: Path) -> None:
        size = SLOTS * COUNTER.size
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with _locked(descriptor):
                if os.fstat(descriptor).st_size < size:
                    os.ftruncate(descriptor, size)
            self._map = mmap.mmap(descriptor, size)
        except BaseException:
            os.close(descriptor)
            raise
        self._descriptor = descriptor

    @staticmethod
    def slot(key_hash: str) -> int:
        return int(key_hash[:8], 16) % SLOTS

    def read(self, slot: int) -> int:
        return int(COUNTER.unpack_from(self._map, slot * COUNTER.size)[0])

    def bump(self, slots: Iterable[int]) -> None:
        with _locked(self._descriptor):
            for slot in set(slots):
                offset = slot * COUNTER.size
                count = COUNTER.unpack_from(self._map, offset)[0]
                COUNTER.pack_into(self._map, offset, (count + 1) % 2**64)

    def close(self) -> None:
        self._map.close()
        os.close(self._descriptor)


@contextmanager
def _locked(descriptor: int) -> Iterator[None]:
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


@dataclass
class _Copy:
    user: User
    session: AuthSession  # user.session
    slot: int
    count: int


class SessionCache:
    """A bounded map from session key hash to the user (with `user.session`) last read."""

    def __init__(self, app: Quart | None = None) -> None:
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._ids: dict[int, str] = {}
        self._board: Board | None = None
        self._board_failed = False
        self.size = 0
        self.max_age = 0.0
        # With Redis, copies are safe only while this worker hears the events of the others.
        self.needs_events = False
        self.hearing_events = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        app.extensions["session_cache"] = self
        size = app.config["SESSION_CACHE_SIZE"]
        if size is None:
            size = DEFAULT_SIZE if str(app.config["DATABASE_URL"]).startswith("sqlite") else 0
        self.size = int(size)
        self.max_age = float(app.config["SESSION_TOUCH_INTERVAL"])
        self.needs_events = bool(app.config["REDIS_URL"])
        cast("SessionEvents", app.extensions["session_events"]).observe(self)
        app.after_serving(self.close)

    def get(self, key_hash: str) -> User | None:
        """The copy for key_hash, when it is still good; else None (and it is dropped)."""
        copy = self._copies.get(key_hash)
        if copy is None:
            return None
        # A copy exists only once the board is open; with Redis, only while subscribed
        # (put refuses otherwise, and losing the subscription clears every copy).
        assert self._board is not None
        if (
            self._board.read(copy.slot) != copy.count
            or (datetime.now(UTC) - copy.session.last_seen_at).total_seconds() >= self.max_age
        ):
            self._drop(key_hash)
            return None
        self._copies.move_to_end(key_hash)
        return copy.user

    def count(self, key_hash: str) -> int | None:
        """Read before the database, so a change made during the read spoils the copy."""
        if self.size <= 0:
            return None
        board = self.board()
        return None if board is None else board.read(board.slot(key_hash))

    def put(self, key_hash: str, user: User, count: int | None) -> None:
        if count is None or user.session is None:
            return
        if self.needs_events and not self.hearing_events:
            return
        self._drop(key_hash)
        session = cast("AuthSession", user.session)
        self._copies[key_hash] = _Copy(user, session, Board.slot(key_hash), count)
        self._ids[session.id] = key_hash
        while len(self._copies) > self.size:
            self._drop(next(iter(self._copies)))

    def changed(self, key_hashes: Iterable[str]) -> None:
        """Sessions ended or changed: every process of this machine drops its copies."""
        hashes = list(key_hashes)
        for key_hash in hashes:
            self._drop(key_hash)
        board = self.board()
        if board is not None and hashes:
            board.bump(Board.slot(key_hash) for key_hash in hashes)

    def heard(self, session_ids: list[int]) -> None:
        """Sessions ended or changed on some worker, maybe on another machine: drop copies."""
        for session_id in session_ids:
            key_hash = self._ids.get(session_id)
            if key_hash is not None:
                self._drop(key_hash)

    def hearing(self, subscribed: bool) -> None:
        """Whether the Redis subscription is up; what was missed while down is unknown."""
        self.clear()
        self.hearing_events = subscribed

    def clear(self) -> None:
        self._copies.clear()
        self._ids.clear()

    def board(self) -> Board | None:
        """The machine's board, opened on first use (the instance folder is known by then)."""
        if self._board is None and not self._board_failed:
            folder = Path(current_app.instance_path)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                self._board = Board(folder / BOARD_FILE)
            except OSError as error:
                # Without the board a copy could outlive a logout on another worker: read
                # every session from the database instead.
                self._board_failed = True
                logger.warning("session cache off: cannot use %s: %s", folder / BOARD_FILE, error)
        return self._board

    async def close(self) -> None:
        self.clear()
        if self._board is not None:
            self._board.close()
            self._board = None

    def _drop(self, key_hash: str) -> None:
        copy = self._copies.pop(key_hash, None)
        if copy is not None:
            self._ids.pop(copy.session.id, None)


def session_cache() -> SessionCache:
    return cast(SessionCache, current_app.extensions["session_cache"])
