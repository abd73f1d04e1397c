"""API tokens: named bearer credentials for programs, stored only as SHA-256 digests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from quart import current_app, request

from .models import ApiToken, User
from .sessions import hash_key

if TYPE_CHECKING:
    from tortoise.backends.base.client import BaseDBAsyncClient

PREFIX = "qat_"


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer ...` header, if the request has one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIX) or len(token) > 128:
        return None
    return token


async def create(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for user: the row, and the secret that is shown only this once."""
    secret = PREFIX + secrets.token_urlsafe(32)
    token = await ApiToken.create(
        user=user,
        name=name,
        token_hash=hash_key(secret),
        # As read with the password just checked: a change since then kills the token.
        credential_generation=user.credential_generation,
    )
    return token, secret


async def for_user(user: User) -> list[ApiToken]:
    return await ApiToken.filter(user_id=user.id).order_by("id")


async def revoke(user: User, token_id: int) -> bool:
    """End one of user's tokens; False when user has no such token."""
    return await ApiToken.filter(id=token_id, user_id=user.id).delete() > 0


async def end_all(user: User, connection: BaseDBAsyncClient | None = None) -> int:
    query = ApiToken.filter(user_id=user.id)
    return await (query.using_db(connection) if connection is not None else query).delete()


async def load_user(secret: str) -> User | None:
    """The user a token belongs to, read with it in one query; None when revoked."""
    token = await ApiToken.filter(token_hash=hash_key(secret)).select_related("user").first()
    if (
        token is None
        or token.credential_generation != token.user.credential_generation
        or not token.user.is_active
    ):
        return None
    now = datetime.now(UTC)
    interval = current_app.config["SESSION_TOUCH_INTERVAL"]
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= interval:
        await ApiToken.filter(id=token.id).update(last_used_at=now)
    user = token.user
    user.api_token = token
    return user
