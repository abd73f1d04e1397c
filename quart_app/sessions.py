"""The server-side session store: the database rows behind the login cookies."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import cast

from .events import session_events
from .login import ServerSession
from .models import AuthSession, User


def hash_key(key: str) -> str:
    """Store only a digest, so a copy of the table cannot be replayed as cookies."""
    return hashlib.sha256(key.encode()).hexdigest()


class DatabaseSessionStore:
    """Sessions as rows of AuthSession, read together with their user in one query."""

    async def start(
        self,
        user: User,
        *,
        remember: bool,
        fresh: bool,
        fingerprint: str,
        ip: str,
        user_agent: str,
        expires_at: datetime,
    ) -> str:
        key = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await AuthSession.create(
            key_hash=hash_key(key),
            user=user,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
            remember=remember,
            fresh=fresh,
            fingerprint=fingerprint,
            ip=ip,
            user_agent=user_agent,
        )
        return key

    async def end(self, session: ServerSession, reason: str) -> None:
        session_id = cast(AuthSession, session).id
        await AuthSession.filter(id=session_id).delete()
        await session_events().publish([session_id], reason)

    async def touch(self, session: ServerSession, now: datetime) -> None:
        session.last_seen_at = now
        await AuthSession.filter(id=cast(AuthSession, session).id).update(last_seen_at=now)

    async def set_fresh(self, session: ServerSession, fresh: bool) -> None:
        session.fresh = fresh
        await AuthSession.filter(id=cast(AuthSession, session).id).update(fresh=fresh)


async def load_user(key: str) -> User | None:
    """The user behind a session key, with `user.session` set; None when it has ended."""
    session = await AuthSession.filter(key_hash=hash_key(key)).select_related("user").first()
    if session is None:
        return None
    user = session.user
    user.session = session
    return user


async def for_user(user: User) -> list[AuthSession]:
    """The user's sessions, the most recently used first."""
    return await AuthSession.filter(user_id=user.id).order_by("-last_seen_at", "-id")


async def end_one(user: User, session_id: int, reason: str) -> bool:
    """End one of user's sessions; False when user has no such session."""
    ended = await AuthSession.filter(id=session_id, user_id=user.id).delete()
    await session_events().publish([session_id] if ended else [], reason)
    return ended > 0


async def end_all(user: User, reason: str, keep: int | None = None) -> int:
    """End every session of user but `keep` (password change, log out everywhere)."""
    query = AuthSession.filter(user_id=user.id)
    if keep is not None:
        query = query.exclude(id=keep)
    ids = await query.values_list("id", flat=True)
    await AuthSession.filter(id__in=ids).delete()
    await session_events().publish(cast(list[int], ids), reason)
    return len(ids)
