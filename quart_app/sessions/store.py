"""The rows behind the login cookies: one statement reads a session with its user."""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from .. import compat
from ..db import Statement
from ..models import AuthSession, User

# Ids are deleted in batches of this size: asyncpg takes at most 32,767 parameters.
BATCH = 1000


def hash_key(key: str) -> str:
    """Store only a digest, so a copy of the table cannot be replayed as cookies."""
    return hashlib.sha256(key.encode()).hexdigest()


async def lookup(key_hash: str) -> tuple[AuthSession, User] | None:
    """The session of key_hash and its user, read in one query; None when there is none."""
    rows = await _lookup().rows(key_hash)
    if not rows:
        return None
    row = rows[0]
    session = compat.model_from_row(AuthSession, row, _SESSION)
    user = compat.model_from_row(User, row, _USER)
    return session, user


# The lookup runs on every request that the cache does not answer. Written once as SQL:
# building the same query through a Tortoise queryset cost more CPU than running it.
_SESSION, _USER = "s_", "u_"


@functools.cache
def _lookup() -> Statement:
    """Built at first use: the models' columns are known once Tortoise has started."""
    columns = [f's."{c}" AS "{_SESSION}{c}"' for c in sorted(compat.db_columns(AuthSession))]
    columns += [f'u."{c}" AS "{_USER}{c}"' for c in sorted(compat.db_columns(User))]
    return Statement(  # names from the models; the key is a parameter
        f"SELECT {', '.join(columns)} FROM {compat.db_table(AuthSession)} s"  # noqa: S608
        f" JOIN {compat.db_table(User)} u ON u.id = s.user_id"
        " WHERE s.key_hash = ?"
    )


async def delete(
    user_id: int,
    *,
    session_ids: list[int] | None = None,
    keep: int | None = None,
    connection: BaseDBAsyncClient | None = None,
) -> int:
    """Delete some of user_id's sessions (session_ids), or every one but keep, by query."""
    query = AuthSession.filter(user_id=user_id)
    if connection is not None:
        query = query.using_db(connection)
    if session_ids is None:
        return await (query.exclude(id=keep) if keep is not None else query).delete()
    deleted = 0
    for start in range(0, len(session_ids), BATCH):
        deleted += await query.filter(id__in=session_ids[start : start + BATCH]).delete()
    return deleted


# Asked at every login.
_BEYOND = Statement(
    f'SELECT "id" FROM {compat.db_table(AuthSession)}'  # noqa: S608  (a name from the model)
    ' WHERE "user_id" = ? ORDER BY "last_seen_at" DESC, "id" DESC LIMIT 2147483647 OFFSET ?'
)


async def beyond(user_id: int, cap: int) -> list[int]:
    """The ids of user_id's sessions past the cap most recently used ones."""
    return [int(row["id"]) for row in await _BEYOND.rows(user_id, cap)]


async def page(user_id: int, offset: int, limit: int) -> list[AuthSession]:
    """limit of user_id's sessions from offset, the most recently used first."""
    query = AuthSession.filter(user_id=user_id).order_by("-last_seen_at", "-id")
    return await query.offset(offset).limit(limit)


async def purge(now: datetime, idle: timedelta) -> int:
    """Delete the rows of sessions past their deadline; nobody can use them any more."""
    expired = Q(expires_at__lte=now) | Q(remember=False, last_seen_at__lte=now - idle)
    return await AuthSession.filter(expired).delete()
