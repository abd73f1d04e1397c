"""The server-side session store: the database rows behind the login cookies."""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any, cast

from tortoise.connection import get_connection

from .events import session_events
from .login import ServerSession
from .models import AuthSession, User
from .session_cache import session_cache


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
        row = cast(AuthSession, session)
        await AuthSession.filter(id=row.id).delete()
        await _forget([(row.id, row.key_hash)], reason)

    async def touch(self, session: ServerSession, now: datetime) -> None:
        session.last_seen_at = now
        await AuthSession.filter(id=cast(AuthSession, session).id).update(last_seen_at=now)

    async def set_fresh(self, session: ServerSession, fresh: bool) -> None:
        row = cast(AuthSession, session)
        row.fresh = fresh
        await AuthSession.filter(id=row.id).update(fresh=fresh)
        await _forget([(row.id, row.key_hash)])


async def load_user(key: str) -> User | None:
    """The user behind a session key, with `user.session` set; None when it has ended.

    One query, sessions joined to users, unless this worker has a good copy.
    """
    key_hash = hash_key(key)
    cache = session_cache()
    user = cache.get(key_hash)
    if user is not None:
        return user
    count = cache.count(key_hash)
    connection = get_connection("default")
    sql = _lookup_sql(connection.capabilities.dialect)
    rows = await connection.execute_query_dict(sql, [key_hash])
    if not rows:
        return None
    session, user = _from_row(rows[0])
    user.session = session
    cache.put(key_hash, user, count)
    return user


# The lookup runs on every request that the cache does not answer. Written once as SQL:
# building the same query through a Tortoise queryset cost more CPU than running it.
_SESSION, _USER = "s_", "u_"


@functools.cache
def _lookup_sql(dialect: str) -> str:
    columns = [f's."{c}" AS "{_SESSION}{c}"' for c in sorted(AuthSession._meta.db_fields)]
    columns += [f'u."{c}" AS "{_USER}{c}"' for c in sorted(User._meta.db_fields)]
    placeholder = "$1" if dialect == "postgres" else "?"
    return (  # names from the models; the key is a parameter
        f"SELECT {', '.join(columns)} FROM {AuthSession._meta.db_table} s"  # noqa: S608
        f" JOIN {User._meta.db_table} u ON u.id = s.user_id"
        f" WHERE s.key_hash = {placeholder}"
    )


def _from_row(row: dict[str, Any]) -> tuple[AuthSession, User]:
    """The two models of one row, converted as Tortoise converts what it reads."""
    session = AuthSession._init_from_db(
        **{c: row[_SESSION + c] for c in AuthSession._meta.db_fields}
    )
    user = User._init_from_db(**{c: row[_USER + c] for c in User._meta.db_fields})
    return session, user


async def for_user(user: User) -> list[AuthSession]:
    """The user's sessions, the most recently used first."""
    return await AuthSession.filter(user_id=user.id).order_by("-last_seen_at", "-id")


async def end_one(user: User, session_id: int, reason: str) -> bool:
    """End one of user's sessions; False when user has no such session."""
    rows = await AuthSession.filter(id=session_id, user_id=user.id).values_list("id", "key_hash")
    if not rows:
        return False
    await AuthSession.filter(id=session_id).delete()
    await _forget(cast(list[tuple[int, str]], rows), reason)
    return True


async def end_all(user: User, reason: str, keep: int | None = None) -> int:
    """End every session of user but `keep` (password change, log out everywhere).

    The kept session's copies are dropped too: its user has changed.
    """
    rows = cast(
        list[tuple[int, str]],
        await AuthSession.filter(user_id=user.id).values_list("id", "key_hash"),
    )
    ending = [row for row in rows if row[0] != keep]
    if ending:
        await AuthSession.filter(id__in=[session_id for session_id, _ in ending]).delete()
    await _forget([row for row in rows if row[0] == keep])
    await _forget(ending, reason)
    return len(ending)


async def _forget(rows: list[tuple[int, str]], reason: str | None = None) -> None:
    """Sessions deleted (reason: why, for their sockets) or changed (None), as (id, key_hash).

    No worker may use its copy any more: those of this machine see the board move, those
    of other machines hear it through Redis.
    """
    session_cache().changed(key_hash for _, key_hash in rows)
    await session_events().publish([session_id for session_id, _ in rows], reason)
