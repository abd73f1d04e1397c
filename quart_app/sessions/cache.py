"""Each worker's copies of the sessions it served lately, so most requests skip the database.

A copy is used only while nothing has ended or changed a session of its user since it was
read:

- every process of the deployment on this machine shares a board of counters (a small
  file in the instance folder, mapped into memory), one per user; ending or changing a
  session bumps its user's counter before the response that did it is sent, and a copy read
  under an older count is dropped. So a logout on one worker holds on every other worker
  from the next request. The count must be read before the database: a worker learns the
  user of a session key on its first read of it, and keeps copies from the second.
- with Redis, or PostgreSQL's LISTEN, workers on other machines drop their copies when the
  event of the end or change reaches them; while that carrier is down they keep no copies.
  An event heard also bumps its user's counter here, so a copy read from the database
  before the change was committed elsewhere, and stored after its event was heard, is
  not used either.
- a copy is also dropped once its session is due to have last_seen written again
  (SESSION_TOUCH_INTERVAL), so every worker still reads the row that often.

A session ended by writing to the database directly (not through the app, its API or its
commands) is noticed by the workers within SESSION_TOUCH_INTERVAL.

A database server can go away while the app runs; every request must then fail closed
with a 503 at once, which a page served from memory would not. So on PostgreSQL without
Redis, where the events come by LISTEN from that same database (NOTIFY is sent in the
transaction of each end or change), a copy is served only while that connection is up and
nothing the server sent on it is still unread (one non-blocking peek at its socket per
request): a NOTIFY on its way, or the end of the connection that a stopping or crashing
server sends, sends the request to the database, which then answers or fails with a 503.
The cache is on by default for SQLite and for PostgreSQL with LISTEN; with Redis and a
database server it is off unless SESSION_CACHE_SIZE is set (Redis says nothing of the
database being up).
"""

from __future__ import annotations

import logging
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from quart import Quart, current_app

from .mapped import MappedFile

if TYPE_CHECKING:
    from ..models import AuthSession, User
    from .events import Event, SessionEvents

logger = logging.getLogger(__name__)

BOARD_FILE = "session-counters"
SLOTS = 8192
COUNTER = struct.Struct("<Q")
DEFAULT_SIZE = 4096


class Board(MappedFile):
    """Counters shared by the processes that map the same file; a user has one slot."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, SLOTS * COUNTER.size)

    @staticmethod
    def slot(user_id: int) -> int:
        return user_id % SLOTS

    def read(self, slot: int) -> int:
        return int(COUNTER.unpack_from(self.map, slot * COUNTER.size)[0])

    def bump(self, slots: Iterable[int]) -> None:
        with self.locked():
            for slot in set(slots):
                offset = slot * COUNTER.size
                count = COUNTER.unpack_from(self.map, offset)[0]
                COUNTER.pack_into(self.map, offset, (count + 1) % 2**64)


@dataclass
class _Copy:
    session: AuthSession
    user: User
    count: int


class SessionCache:
    """A bounded map from session key hash to the session and user last read with it."""

    def __init__(self, app: Quart | None = None) -> None:
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._by_user: dict[int, set[str]] = {}
        # Whose each key is, learnt on a first read: a key never changes hands.
        self._owners: OrderedDict[str, int] = OrderedDict()
        self._board: Board | None = None
        self._board_failed = False
        self.size = 0
        self.max_age = 0.0
        # With other machines, copies are safe only while this worker hears their events.
        self.needs_events = False
        self.hearing_events = False
        self._events: SessionEvents | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        app.extensions["session_cache"] = self
        size = app.config["SESSION_CACHE_SIZE"]
        events = cast("SessionEvents", app.extensions["session_events"])
        if size is None:
            sqlite = str(app.config["DATABASE_URL"]).startswith("sqlite")
            size = DEFAULT_SIZE if sqlite or events.listens_to_database else 0
        self.size = int(size)
        self.max_age = float(app.config["SESSION_TOUCH_INTERVAL"])
        self._events = events
        self.needs_events = events.between_machines
        events.observe(self)
        app.after_serving(self.close)

    def get(self, key_hash: str) -> tuple[AuthSession, User] | None:
        """The copy for key_hash, when it is still good; else None (and it is dropped)."""
        copy = self._copies.get(key_hash)
        if copy is None:
            return None
        if self.needs_events and self._events is not None and not self._events.all_heard():
            return None  # the database may be saying something: ask it
        # A copy exists only once the board is open (put needs a count).
        assert self._board is not None
        if (
            self._board.read(Board.slot(copy.user.id)) != copy.count
            or (datetime.now(UTC) - copy.session.last_seen_at).total_seconds() >= self.max_age
        ):
            self._drop(key_hash)
            return None
        self._copies.move_to_end(key_hash)
        return copy.session, copy.user

    def count(self, key_hash: str) -> int | None:
        """Read before the database, so a change made during the read spoils the copy."""
        if self.size <= 0:
            return None
        user_id = self._owners.get(key_hash)
        board = self.board()
        if user_id is None or board is None:
            return None
        return board.read(Board.slot(user_id))

    def learn(self, key_hash: str, user_id: int) -> None:
        """Remember whose key this is, so the next read of it can be kept."""
        if self.size <= 0:
            return
        self._owners[key_hash] = user_id
        self._owners.move_to_end(key_hash)
        while len(self._owners) > 4 * self.size:
            self._owners.popitem(last=False)

    def put(self, key_hash: str, session: AuthSession, user: User, count: int | None) -> None:
        self.learn(key_hash, user.id)
        if self.size <= 0 or count is None or (self.needs_events and not self.hearing_events):
            return
        self._drop(key_hash)
        self._copies[key_hash] = _Copy(session, user, count)
        self._by_user.setdefault(user.id, set()).add(key_hash)
        while len(self._copies) > self.size:
            self._drop(next(iter(self._copies)))

    def changed(self, user_ids: Iterable[int]) -> None:
        """Sessions of these users ended or changed: every process of this machine drops copies."""
        ids = set(user_ids)
        for user_id in ids:
            self._drop_user(user_id)
        board = self.board() if self.size > 0 else None
        if board is not None and ids:
            board.bump(Board.slot(user_id) for user_id in ids)

    def heard(self, event: Event) -> None:
        """A session of this user ended or changed somewhere, maybe on another machine.

        Its counter moves too: a copy being read meanwhile, from before the change, is
        then stored under an older count and never used.
        """
        self._drop_user(event.user_id)
        board = self._board if self.size > 0 else None
        if board is not None:
            board.bump([Board.slot(event.user_id)])

    def hearing(self, subscribed: bool) -> None:
        """Whether events from other machines arrive; what was missed while down is unknown."""
        self.clear()
        self.hearing_events = subscribed

    def clear(self) -> None:
        self._copies.clear()
        self._by_user.clear()

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

    def _drop_user(self, user_id: int) -> None:
        for key_hash in list(self._by_user.get(user_id, ())):
            self._drop(key_hash)

    def _drop(self, key_hash: str) -> None:
        copy = self._copies.pop(key_hash, None)
        if copy is not None:
            hashes = self._by_user.get(copy.user.id)
            if hashes is not None:
                hashes.discard(key_hash)
                if not hashes:
                    del self._by_user[copy.user.id]


def session_cache() -> SessionCache:
    return cast(SessionCache, current_app.extensions["session_cache"])
