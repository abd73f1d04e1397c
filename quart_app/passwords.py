"""Password hashing: argon2id on a bounded thread pool, werkzeug hashes accepted and upgraded."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError
from quart import Quart
from werkzeug.security import check_password_hash

T = TypeVar("T")

ARGON2_PREFIX = "$argon2id$"
WERKZEUG_PREFIXES = ("scrypt:", "pbkdf2:")
# How many recent verifies of each legacy method its cost is taken from (their median).
COST_SAMPLES = 5


def normalize(password: str) -> str:
    """NFKC, so the same password typed on another keyboard or OS still matches."""
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """Hash and verify passwords without ever blocking the event loop."""

    def __init__(self, app: Quart | None = None) -> None:
        self._argon2 = Argon2Hasher()
        self._executor: ThreadPoolExecutor | None = None
        self._legacy: ThreadPoolExecutor | None = None
        self._dummy_hash: str | None = None
        self._costs: dict[str, deque[float]] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=app.config["ARGON2_TIME_COST"],
            memory_cost=app.config["ARGON2_MEMORY_COST"],
            parallelism=app.config["ARGON2_PARALLELISM"],
            type=Type.ID,
        )
        # A fixed number of threads bounds the memory argon2 can take (threads x memory_cost)
        # however many logins arrive at once; the rest wait in the queue.
        self._executor = ThreadPoolExecutor(
            max_workers=app.config["HASH_THREADS"], thread_name_prefix="password-hash"
        )
        # Werkzeug's KDFs cost 3-10 argon2 verifies: their own thread keeps them from
        # holding up every other login of the worker.
        self._legacy = ThreadPoolExecutor(
            max_workers=app.config["LEGACY_HASH_THREADS"], thread_name_prefix="legacy-hash"
        )
        app.extensions["password_hasher"] = self
        app.after_serving(self._shutdown)

    async def hash(self, password: str) -> str:
        """An argon2id hash of the NFKC form of password."""
        return await self._run(self._argon2.hash, normalize(password))

    async def verify(self, stored_hash: str, password: str) -> bool:
        """True when password matches stored_hash, argon2id or werkzeug's format."""
        if not stored_hash.startswith(WERKZEUG_PREFIXES):
            return await self._run(self._verify_sync, stored_hash, password)
        started = time.perf_counter()
        matched = await self._run(self._verify_sync, stored_hash, password, executor=self._legacy)
        method = stored_hash.partition("$")[0]
        self._costs.setdefault(method, deque(maxlen=COST_SAMPLES)).append(
            time.perf_counter() - started
        )
        return matched

    async def answer_failure(self, started: float) -> None:
        """Wait until a failed check begun at `started` took what the costliest one takes.

        A legacy hash cannot be verified without its own KDF, so a wrong password for an
        imported account costs more than for a native or unknown one; every failure is
        answered no sooner than the slowest legacy method this worker has verified lately.
        The wait is a sleep: it holds no thread and no CPU.
        """
        floor = max((statistics.median(c) for c in self._costs.values()), default=0.0)
        remaining = started + floor - time.perf_counter()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def dummy_verify(self, password: str) -> None:
        """Spend the time of a real verify, so unknown users cannot be told apart."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True for werkzeug hashes and argon2id hashes made with other parameters."""
        if not stored_hash.startswith(ARGON2_PREFIX):
            return True
        return self._argon2.check_needs_rehash(stored_hash)

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        # A corrupt stored hash, or text that cannot be encoded, is a mismatch, not a crash.
        try:
            if stored_hash.startswith(ARGON2_PREFIX):
                return self._argon2.verify(stored_hash, normalize(password))
            if stored_hash.startswith(WERKZEUG_PREFIXES):
                # Flask hashed the password as typed; try that form, then the normalised one.
                candidates = dict.fromkeys((password, normalize(password)))
                return any(check_password_hash(stored_hash, c) for c in candidates)
        except (VerificationError, InvalidHashError, ValueError, TypeError, OverflowError):
            return False
        return False

    async def _run(
        self, func: Callable[..., T], *args: str, executor: ThreadPoolExecutor | None = None
    ) -> T:
        pool = executor or self._executor
        if pool is None:
            raise RuntimeError("PasswordHasher.init_app has not been called")
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)

    async def _shutdown(self) -> None:
        for pool in (self._executor, self._legacy):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
