"""A `limits` storage in a SQLite file, so the workers of one machine share their counters.

`limits` keeps counters in memory (one process each), Redis, Memcached, MongoDB or etcd:
nothing that several processes of one machine can share without a server. This storage
keeps the moving windows in a SQLite file in WAL mode, written from one thread per process;
`BEGIN IMMEDIATE` makes each count-and-add atomic across processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from limits.aio.storage import MovingWindowSupport, Storage

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hits_by_key ON hits (key, at);
CREATE INDEX IF NOT EXISTS hits_by_expiry ON hits (expires);
"""
# Rows of windows that have passed are deleted once in this many acquisitions.
PURGE_EVERY = 500
SETUP_ATTEMPTS = 20


class SQLiteStorage(Storage, MovingWindowSupport):
    """Moving windows in a SQLite file; `path` is called once, at the first use."""

    STORAGE_SCHEME = None

    def __init__(self, path: Callable[[], Path]) -> None:
        super().__init__()
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._acquired = 0
        # One thread: the connection is only ever used from it, and calls queue in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="throttle-store")

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return await self._run(self._acquire, key, limit, expiry, amount)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return await self._run(self._window, key, expiry)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return await self._run(self._incr, key, expiry, amount)

    async def get(self, key: str) -> int:
        return await self._run(self._count, key)

    async def get_expiry(self, key: str) -> float:
        return await self._run(self._expiry, key)

    async def check(self) -> bool:
        return await self._run(lambda: self._connection().execute("SELECT 1").fetchone() == (1,))

    async def reset(self) -> int | None:
        return await self._run(lambda: self._connection().execute("DELETE FROM hits").rowcount)

    async def clear(self, key: str) -> None:
        await self._run(lambda: self._connection().execute("DELETE FROM hits WHERE key = ?", [key]))

    async def close(self) -> None:
        """Close the file and stop the thread."""
        await self._run(self._close)
        self._executor.shutdown(wait=False)

    def _acquire(self, key: str, limit: int, expiry: int, amount: int) -> bool:
        db = self._connection()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")  # the write lock, across processes, until COMMIT
        try:
            db.execute("DELETE FROM hits WHERE key = ? AND at <= ?", [key, now - expiry])
            (count,) = db.execute("SELECT COUNT(*) FROM hits WHERE key = ?", [key]).fetchone()
            allowed = bool(count + amount <= limit)
            if allowed:
                db.executemany(
                    "INSERT INTO hits (key, at, expires) VALUES (?, ?, ?)",
                    [(key, now, now + expiry)] * amount,
                )
            self._acquired += 1
            if self._acquired % PURGE_EVERY == 0:
                db.execute("DELETE FROM hits WHERE expires <= ?", [now])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return allowed

    def _window(self, key: str, expiry: int) -> tuple[float, int]:
        now = time.time()
        count, oldest = (
            self._connection()
            .execute(
                "SELECT COUNT(*), MIN(at) FROM hits WHERE key = ? AND at > ?", [key, now - expiry]
            )
            .fetchone()
        )
        return (oldest if oldest is not None else now), count

    def _incr(self, key: str, expiry: int, amount: int) -> int:
        now = time.time()
        db = self._connection()
        db.executemany(
            "INSERT INTO hits (key, at, expires) VALUES (?, ?, ?)",
            [(key, now, now + expiry)] * amount,
        )
        return self._count(key)

    def _count(self, key: str) -> int:
        query = "SELECT COUNT(*) FROM hits WHERE key = ? AND expires > ?"
        return int(self._connection().execute(query, [key, time.time()]).fetchone()[0])

    def _expiry(self, key: str) -> float:
        query = "SELECT MAX(expires) FROM hits WHERE key = ?"
        (expires,) = self._connection().execute(query, [key]).fetchone()
        return float(expires) if expires is not None else time.time()

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            path = self._path()
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level=None): the transactions are the explicit ones above.
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
            for attempt in range(SETUP_ATTEMPTS):
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                    break
                except sqlite3.OperationalError:
                    # Switching to WAL while another worker does gets SQLITE_BUSY at once,
                    # without the busy timeout; the other worker is done a moment later.
                    if attempt == SETUP_ATTEMPTS - 1:
                        db.close()
                        raise
                    time.sleep(0.05 * (attempt + 1))
            db.execute("PRAGMA synchronous=NORMAL")  # counters may lose the last hits on a crash
            self._db = db
        return self._db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
