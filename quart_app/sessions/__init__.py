"""The life of a login session, from start to end: the one place that decides it.

A session starts at login, is resolved on every request (the cookie's key and the client in;
the session and its user, or the reason it ended, out), is touched, loses or regains its
freshness, and ends: by logout, from another device, by a password change or reset, a
disable, protection, the per-user cap, or its deadline. Only this package talks to the
session cache and the session events; pages, API, sockets and commands call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Quart, current_app
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import BaseORMException
from tortoise.transactions import in_transaction

from ..models import AuthSession, User
from . import pending, store
from .cache import SessionCache, session_cache
from .events import REASONS, RECHECK, Event, SessionEvents, session_events
from .store import hash_key

logger = logging.getLogger(__name__)

__all__ = [
    "REASONS",
    "Client",
    "Ending",
    "Resolved",
    "deadline",
    "end",
    "end_all",
    "end_one",
    "ending",
    "hash_key",
    "init_app",
    "page",
    "resolve",
    "set_fresh",
    "start",
    "until_ended",
]


def init_app(app: Quart) -> None:
    """Wire the events, the cache and the purge of expired rows into app."""
    SessionEvents(app)
    SessionCache(app)
    purge = _Purge()
    app.before_serving(purge.start)
    app.after_serving(purge.stop)


def seconds(value: Any) -> float:
    """A duration from configuration: seconds, or a timedelta as Flask configs write it."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True)
class Client:
    """Who is asking: the address and user agent that Flask-Login's protection compares."""

    address: str
    user_agent: str

    @property
    def fingerprint(self) -> str:
        """Flask-Login's session identifier: a hash of the client address and user agent."""
        return hashlib.sha512(f"{self.address}|{self.user_agent}".encode()).hexdigest()


@dataclass
class Resolved:
    """What a session key stands for now: its session and user, or why there is none."""

    session: AuthSession | None = None
    user: User | None = None
    ended: str | None = None  # a reason of REASONS, or None for a key that names nothing


async def start(
    user: User,
    *,
    remember: bool,
    fresh: bool,
    client: Client,
    device: str,
    lifetime: timedelta | None = None,
) -> tuple[str, AuthSession]:
    """A new session for user: the key for its cookie, and the row (only its digest is kept).

    lifetime, when given, replaces the configured one (Flask-Login's `duration`).
    """
    config = current_app.config
    if lifetime is None:
        lifetime = config["REMEMBER_COOKIE_DURATION"] if remember else config["SESSION_LIFETIME"]
    key = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session = await AuthSession.create(
        key_hash=hash_key(key),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=seconds(lifetime)),
        remember=remember,
        fresh=fresh,
        fingerprint=client.fingerprint,
        ip=client.address[:45],
        user_agent=client.user_agent[:512],
        device=device[:160],
        # As read with the password that was checked: a change since then kills the session.
        credential_generation=user.credential_generation,
    )
    session_cache().learn(session.key_hash, user.id)
    await _enforce_cap(user.id)
    return key, session


async def resolve(
    key: str,
    client: Client,
    *,
    protection: str | None,
    logged_in_here: Callable[[], bool],
) -> Resolved:
    """The session of a cookie's key, once it has passed the deadline, credentials, protection.

    logged_in_here tells whether this browser session logged in (Flask-Login's rule: a
    session restored from the remember cookie is not fresh); it is asked only when it matters.
    """
    key_hash = hash_key(key)
    cache = session_cache()
    found = cache.get(key_hash)
    if found is None:
        count = cache.count(key_hash)
        found = await store.lookup(key_hash)
        if found is None:
            return Resolved()
        cache.put(key_hash, *found, count)
    session, user = found
    now = datetime.now(UTC)
    reason = _dead(session, user, now)
    if reason is not None:
        await end(session, reason)
        return Resolved(ended=reason)
    if protection and session.fingerprint != client.fingerprint:
        # Flask-Login: "strong" ends the session, unless it is remembered (permanent),
        # which like "basic" only loses its freshness.
        if protection == "strong" and not session.remember:
            await end(session, "protection")
            return Resolved(ended="protection")
        if session.fresh:
            await set_fresh(session, False)
    elif session.remember and session.fresh and not logged_in_here():
        await set_fresh(session, False)
    if (now - session.last_seen_at).total_seconds() >= current_app.config["SESSION_TOUCH_INTERVAL"]:
        session.last_seen_at = now
        await AuthSession.filter(id=session.id).update(last_seen_at=now)
    return Resolved(session, user)


def _dead(session: AuthSession, user: User, now: datetime) -> str | None:
    """Why session can no longer be used, or None."""
    if session.credential_generation != user.credential_generation:
        return "password_changed"
    if not user.is_active:
        return "disabled"
    if now >= deadline(session):
        return "expired"
    return None


def deadline(session: AuthSession) -> datetime:
    """When session ends unless used: its absolute expiry, or idle time for a forgotten one."""
    until = session.expires_at
    if not session.remember:
        idle = timedelta(seconds=seconds(current_app.config["SESSION_IDLE_TIMEOUT"]))
        until = min(until, session.last_seen_at + idle)
    return until


async def set_fresh(session: AuthSession, fresh: bool) -> None:
    """Mark session fresh (the password was just entered) or not; every worker hears."""
    session.fresh = fresh
    async with ending(session.user_id) as change:
        await AuthSession.filter(id=session.id).using_db(change.connection).update(fresh=fresh)
        change.changed(session.id)


async def end(session: AuthSession, reason: str) -> None:
    """End one session (logout, expiry, protection): its cookie works nowhere any more."""
    await end_one(session.user_id, session.id, reason)


async def end_one(user_id: int, session_id: int, reason: str) -> bool:
    """End one of user_id's sessions; False when user_id has no such session."""
    async with ending(user_id) as change:
        return await change.some([session_id], reason) > 0


async def end_all(user_id: int, reason: str, keep: int | None = None) -> int:
    """End every session of user_id but keep (log out everywhere else)."""
    async with ending(user_id) as change:
        return await change.all(reason, keep=keep)


@dataclass
class Ending:
    """Ends and changes of one user's sessions, made in one transaction."""

    user_id: int
    connection: BaseDBAsyncClient
    events: list[Event] = field(default_factory=list)

    async def some(self, session_ids: list[int], reason: str) -> int:
        deleted = await store.delete(
            self.user_id, session_ids=session_ids, connection=self.connection
        )
        self.events.append(Event(self.user_id, tuple(session_ids), reason=reason))
        return deleted

    async def all(self, reason: str, keep: int | None = None, generation: int | None = None) -> int:
        """Every session but keep; keep takes the user's new credential generation if given."""
        deleted = await store.delete(self.user_id, keep=keep, connection=self.connection)
        if keep is not None and generation is not None:
            await (
                AuthSession.filter(id=keep, user_id=self.user_id)
                .using_db(self.connection)
                .update(credential_generation=generation)
            )
            self.changed(keep)
        self.events.append(Event(self.user_id, every=True, keep=keep, reason=reason))
        return deleted

    def changed(self, session_id: int) -> None:
        self.events.append(Event(self.user_id, (session_id,)))


@contextlib.asynccontextmanager
async def ending(user_id: int) -> AsyncIterator[Ending]:
    """A transaction that ends or changes user_id's sessions; every worker hears once it commits.

    Other writes that belong with the end (a new password, a disable, tokens) go in the
    same transaction through `.connection`.
    """
    events = session_events()
    async with in_transaction() as connection:
        change = Ending(user_id, connection)
        yield change
        for event in change.events:
            await events.within(connection, event)
    session_cache().changed([user_id])
    for event in change.events:
        await events.publish(event)


async def page(user_id: int, number: int, size: int) -> tuple[list[AuthSession], bool]:
    """Page `number` (from 1) of user_id's sessions, most recent first, and whether more follow."""
    rows = await store.page(user_id, (number - 1) * size, size + 1)
    return rows[:size], len(rows) > size


async def until_ended(session: AuthSession) -> str:
    """Wait until session ends, and say why: an event, or its deadline passing unused."""
    events = session_events()
    queue = events.subscribe(session.id)
    try:
        while True:
            delay = max(0.0, (deadline(session) - datetime.now(UTC)).total_seconds())
            with contextlib.suppress(TimeoutError):
                reason = await asyncio.wait_for(queue.get(), timeout=delay)
                if reason != RECHECK:
                    return reason
            # The deadline passed, or events were missed: other requests may have kept it
            # alive meanwhile, or ended it.
            current = await AuthSession.get_or_none(id=session.id)
            if current is None:
                return "ended_elsewhere"
            session = current
            if datetime.now(UTC) >= deadline(session):
                await end(session, "expired")
                return "expired"
    finally:
        events.unsubscribe(session.id, queue)


async def _enforce_cap(user_id: int) -> None:
    """End the least recently used sessions of user_id beyond SESSION_MAX_PER_USER."""
    cap = int(current_app.config["SESSION_MAX_PER_USER"])
    if cap <= 0:
        return
    surplus = await store.beyond(user_id, cap)
    if surplus:
        async with ending(user_id) as change:
            await change.some(surplus, "session_limit")


class _Purge:
    """Delete the rows of sessions past their deadline, now and then, in each worker."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        interval = seconds(current_app.config["SESSION_PURGE_INTERVAL"])
        if interval > 0:
            self._task = asyncio.create_task(self._run(current_app._get_current_object(), interval))  # type: ignore[attr-defined]

    async def _run(self, app: Quart, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            async with app.app_context():
                idle = timedelta(seconds=seconds(app.config["SESSION_IDLE_TIMEOUT"]))
                try:
                    purged = await store.purge(datetime.now(UTC), idle)
                    await pending.purge(datetime.now(UTC))
                except (BaseORMException, OSError):
                    logger.warning("could not purge expired sessions", exc_info=True)
                    continue
                if purged:
                    logger.info("purged %d expired session(s)", purged)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
