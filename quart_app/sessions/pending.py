"""Logins between the password and the second factor: a row and a cookie, never a session.

A pending login is not a Quart-Auth login: `current_user` stays anonymous, and no page or
API route but the second step reads it. Its cookie holds a random key; the table keeps only
its SHA-256, so a database dump cannot finish anybody's login.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from quart import after_this_request, current_app, g, has_request_context, request
from quart.typing import ResponseTypes
from tortoise.expressions import F

from ..models import PendingLogin, User
from .store import hash_key

LIFETIME = timedelta(minutes=5)
MAX_FAILURES = 5


def _cookie_name() -> str:
    return str(current_app.config["PENDING_COOKIE_NAME"])


async def begin(user: User, *, remember: bool, next_url: str) -> PendingLogin:
    """Remember that user's password passed; the browser gets the pending cookie."""
    await _drop_own()
    key = secrets.token_urlsafe(32)
    pending = await PendingLogin.create(
        key_hash=hash_key(key),
        user_id=user.id,
        remember=remember,
        next_url=next_url[:2048],
        expires_at=datetime.now(UTC) + LIFETIME,
        credential_generation=user.credential_generation,
    )
    _set_cookie(key, int(LIFETIME.total_seconds()))
    return pending


async def current() -> tuple[PendingLogin, User] | None:
    """This browser's pending login and its user, if it is still alive."""
    if "_pending_login" in g:
        found: tuple[PendingLogin, User] | None = g._pending_login
        return found
    key = request.cookies.get(_cookie_name()) if has_request_context() else None
    found = None
    if key:
        pending = await PendingLogin.get_or_none(key_hash=hash_key(key)).prefetch_related("user")
        if pending is not None and _alive(pending):
            found = (pending, pending.user)
        elif pending is not None:
            await PendingLogin.filter(id=pending.id).delete()
    g._pending_login = found
    return found


def _alive(pending: PendingLogin) -> bool:
    user = pending.user
    return (
        datetime.now(UTC) < pending.expires_at
        and pending.failures < MAX_FAILURES
        and user.is_active
        and user.credential_generation == pending.credential_generation
    )


async def fail(pending: PendingLogin) -> bool:
    """Count a wrong code; True when the pending login ended (MAX_FAILURES reached)."""
    # Counted in the database, so parallel guesses cannot share one failure.
    await PendingLogin.filter(id=pending.id).update(failures=F("failures") + 1)
    refreshed = await PendingLogin.get_or_none(id=pending.id)
    if refreshed is None or refreshed.failures >= MAX_FAILURES:
        await end(pending)
        return True
    pending.failures = refreshed.failures
    return False


async def take(pending: PendingLogin) -> bool:
    """End the pending login because its second step passed; False if it was already gone."""
    taken = await PendingLogin.filter(id=pending.id).delete() > 0
    _forget()
    return taken


async def end(pending: PendingLogin) -> None:
    """End the pending login: the visitor must start again with the password."""
    await PendingLogin.filter(id=pending.id).delete()
    _forget()


async def _drop_own() -> None:
    """A new password step replaces this browser's earlier pending login."""
    found = await current()
    if found is not None:
        await PendingLogin.filter(id=found[0].id).delete()


async def purge(now: datetime) -> int:
    """Delete the pending logins past their deadline."""
    return await PendingLogin.filter(expires_at__lte=now).delete()


def _forget() -> None:
    g._pending_login = None
    _set_cookie("", 0)


def _set_cookie(value: str, max_age: int) -> None:
    config = current_app.config
    name = _cookie_name()

    @after_this_request
    async def write(response: ResponseTypes) -> ResponseTypes:
        if max_age:
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                path="/",
                secure=config["SESSION_COOKIE_SECURE"],
                httponly=True,
                samesite="Lax",
            )
        else:
            response.delete_cookie(
                name, path="/", secure=config["SESSION_COOKIE_SECURE"], httponly=True
            )
        response.headers["Cache-Control"] = "no-store"
        return response
