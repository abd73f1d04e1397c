"""Rate limits on login and registration, in-process or shared by every worker through Redis."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from quart import Quart
from werkzeug.exceptions import TooManyRequests

from .i18n import _l

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

LIMIT_SETTINGS = (
    "LOGIN_FAILURES_PER_ACCOUNT",
    "LOGIN_ATTEMPTS_PER_ADDRESS",
    "REGISTRATIONS_PER_ADDRESS",
)


class Throttled(TooManyRequests):
    """Too many attempts; `seconds` until the next one is allowed (sent as Retry-After)."""

    error_code = "rate_limited"
    description = _l("Too many attempts. Please wait and try again.")

    def __init__(self, seconds: int) -> None:
        super().__init__(retry_after=seconds)
        self.seconds = seconds


class Throttle:
    """Moving-window limits from `limits`, whose Redis store counts atomically in Lua."""

    def __init__(self, app: Quart | None = None) -> None:
        self.enabled = True
        self.limits: dict[str, RateLimitItem] = {}
        self._limiter: MovingWindowRateLimiter | None = None
        self._pool: ConnectionPool | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        self.enabled = bool(app.config["RATE_LIMITER_ENABLED"])
        self.limits = {name: parse(str(app.config[name])) for name in LIMIT_SETTINGS}
        redis_url = app.config["REDIS_URL"]
        storage = self._redis_storage(redis_url) if redis_url else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        app.extensions["throttle"] = self
        app.after_serving(self.close)

    def _redis_storage(self, redis_url: str) -> Storage:
        """A store in Redis, through a client imported only when Redis is configured."""
        from limits.aio.storage import RedisStorage
        from redis.asyncio import ConnectionPool

        # Our own pool, so the connections can be closed when the app stops serving.
        self._pool = ConnectionPool.from_url(redis_url)
        return RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix="quart_app",
            connection_pool=self._pool,  # type: ignore[arg-type]
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def hit(self, name: str, identifier: str) -> None:
        """Count one attempt; raise Throttled when it is over the limit."""
        if self.enabled and not await self._strategy().hit(self.limits[name], identifier):
            raise Throttled(await self._retry_after(name, identifier))

    async def check(self, name: str, identifier: str) -> None:
        """Raise Throttled when the limit is already used up, without counting."""
        if self.enabled and not await self._strategy().test(self.limits[name], identifier):
            raise Throttled(await self._retry_after(name, identifier))

    async def clear(self, name: str, identifier: str) -> None:
        if self.enabled:
            await self._strategy().clear(self.limits[name], identifier)

    async def _retry_after(self, name: str, identifier: str) -> int:
        stats = await self._strategy().get_window_stats(self.limits[name], identifier)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _strategy(self) -> MovingWindowRateLimiter:
        if self._limiter is None:
            raise RuntimeError("Throttle.init_app has not been called")
        return self._limiter
