"""Rate limits on login and registration, and the device cookies that exempt their owners.

Counters live in a file shared by the workers of one machine, or in Redis shared by every
machine. Per-address limits count a client's network (an IPv6 /64 by default), since one
machine has as many addresses of its /64 as it likes.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from quart import Quart, after_this_request, current_app, has_request_context, request
from quart.typing import ResponseTypes
from werkzeug.exceptions import TooManyRequests

from .i18n import _l
from .throttle_store import SQLiteStorage

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

LIMIT_SETTINGS = (
    "LOGIN_FAILURES_PER_ACCOUNT",
    "LOGIN_FAILURES_PER_DEVICE",
    "LOGIN_ATTEMPTS_PER_ADDRESS",
    "REGISTRATIONS_PER_ADDRESS",
    "PASSWORD_RESETS_PER_ADDRESS",
    "PASSWORD_RESETS_PER_ACCOUNT",
)
STORAGES = ("memory", "file", "redis")
STORE_FILE = "throttle.sqlite3"
DEVICE_SALT = "quart_app.device-cookie"


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
        self.prefixes = {4: 32, 6: 64}
        self._limiter: MovingWindowRateLimiter | None = None
        self._pool: ConnectionPool | None = None
        self._file: SQLiteStorage | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        self.enabled = bool(app.config["RATE_LIMITER_ENABLED"])
        self.limits = {name: parse(str(app.config[name])) for name in LIMIT_SETTINGS}
        self.prefixes = {
            4: int(app.config["THROTTLE_IPV4_PREFIX"]),
            6: int(app.config["THROTTLE_IPV6_PREFIX"]),
        }
        self._limiter = MovingWindowRateLimiter(self._storage(app))
        app.extensions["throttle"] = self
        app.after_serving(self.close)

    def _storage(self, app: Quart) -> Storage:
        """Redis when configured; else a file every worker of this machine shares."""
        kind = app.config["RATE_LIMIT_STORAGE"] or ("redis" if app.config["REDIS_URL"] else "file")
        if kind not in STORAGES:
            raise ValueError(f"RATE_LIMIT_STORAGE must be one of {', '.join(STORAGES)}")
        if kind == "redis":
            return self._redis_storage(app.config["REDIS_URL"])
        if kind == "memory":
            return MemoryStorage()
        # Resolved at the first count: tests and tools may move the instance folder after init.
        self._file = SQLiteStorage(lambda: Path(app.instance_path) / STORE_FILE)
        return self._file

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
        if self._file is not None:
            await self._file.close()

    async def hit(self, name: str, identifier: str) -> None:
        """Count one attempt; raise Throttled when it is over the limit."""
        identifier = self._key(name, identifier)
        if self.enabled and not await self._strategy().hit(self.limits[name], identifier):
            raise Throttled(await self._retry_after(name, identifier))

    async def check(self, name: str, identifier: str) -> None:
        """Raise Throttled when the limit is already used up, without counting."""
        identifier = self._key(name, identifier)
        if self.enabled and not await self._strategy().test(self.limits[name], identifier):
            raise Throttled(await self._retry_after(name, identifier))

    async def clear(self, name: str, identifier: str) -> None:
        if self.enabled:
            await self._strategy().clear(self.limits[name], self._key(name, identifier))

    def network(self, address: str) -> str:
        """The network a per-address limit counts: address/32 (IPv4) or /64 (IPv6) by default."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address  # not an IP (a Unix socket): counted as it is
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return str(ipaddress.ip_network(f"{ip}/{self.prefixes[ip.version]}", strict=False))

    def _key(self, name: str, identifier: str) -> str:
        return self.network(identifier) if name.endswith("_PER_ADDRESS") else identifier

    async def _retry_after(self, name: str, identifier: str) -> int:
        stats = await self._strategy().get_window_stats(self.limits[name], identifier)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def _strategy(self) -> MovingWindowRateLimiter:
        if self._limiter is None:
            raise RuntimeError("Throttle.init_app has not been called")
        return self._limiter


def device_of(account: str) -> str | None:
    """The id of this client's device cookie when it was issued for account, else None.

    OWASP's device cookies: a client that once logged in to the account keeps a
    failure counter of its own, so guesses from elsewhere cannot lock its owner out.
    """
    if not has_request_context():
        return None
    raw = request.cookies.get(current_app.config["DEVICE_COOKIE_NAME"])
    if not raw:
        return None
    try:
        data: Any = _devices().loads(raw, max_age=current_app.config["DEVICE_COOKIE_DURATION"])
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("account") != account:
        return None
    device = data.get("device")
    return device if isinstance(device, str) else None


def issue_device_cookie(account: str) -> None:
    """Give the client a new device cookie for account, after a successful login."""
    if not has_request_context():
        return
    value = _devices().dumps({"account": account, "device": secrets.token_urlsafe(16)})
    config = current_app.config

    @after_this_request
    async def set_cookie(response: ResponseTypes) -> ResponseTypes:
        response.set_cookie(
            config["DEVICE_COOKIE_NAME"],
            value,
            max_age=config["DEVICE_COOKIE_DURATION"],
            path="/",
            secure=config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Strict",
        )
        return response


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=DEVICE_SALT)
