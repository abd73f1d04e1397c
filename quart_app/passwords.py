"""Password hashing: argon2id on a bounded thread pool, werkzeug hashes accepted and upgraded."""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
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


def normalize(password: str) -> str:
    """NFKC, so the same password typed on another keyboard or OS still matches."""
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """Hash and verify passwords without ever blocking the event loop."""

    def __init__(self, app: Quart | None = None) -> None:
        self._argon2 = Argon2Hasher()
        self._executor: ThreadPoolExecutor | None = None
        self._dummy_hash: str | None = None
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
        app.extensions["password_hasher"] = self
        app.after_serving(self._shutdown)

    async def hash(self, password: str) -> str:
        """An argon2id hash of the NFKC form of password."""
        return await self._run(self._argon2.hash, normalize(password))

    async def verify(self, stored_hash: str, password: str) -> bool:
        """True when password matches stored_hash, argon2id or werkzeug's format."""
        return await self._run(self._verify_sync, stored_hash, password)

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

    async def _run(self, func: Callable[..., T], *args: str) -> T:
        if self._executor is None:
            raise RuntimeError("PasswordHasher.init_app has not been called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
