"""Addresses and the links mailed to them: verification, password reset.

Tokens are random (256 bits), stored only as SHA-256 digests, single use and short-lived.
A reset link carries the user's credential generation: any password change voids it, and
a newer link replaces it. A verification link names its address: a change voids it.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from email_validator import EmailNotValidError, validate_email
from quart import current_app, url_for
from quart_babel import gettext as _
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction
from werkzeug.exceptions import BadRequest, Conflict

from . import accounts, outbox, sessions
from .i18n import _l, current_language
from .models import EMAIL_MAX, USERNAME_MAX, RecoveryToken, User
from .throttle import Throttle, Throttled

if TYPE_CHECKING:
    from tortoise.backends.base.client import BaseDBAsyncClient

RESET, VERIFY = "reset", "verify"
# The one answer to a reset request, whether or not an account matched.
RESET_SENT = _l(
    "If an account matches and has a verified email address, a link to reset its password"
    " is on its way. It works for one hour."
)


class EmailTaken(Conflict):
    error_code = "email_taken"
    description = _l("That email address is already used by another account.")
    field = "email"


class InvalidToken(BadRequest):
    """A link that is unknown, used, expired, replaced by a newer one, or void."""

    error_code = "invalid_token"
    description = _l("This link is not valid any more. Please ask for a new one.")


def clean_email(raw: str) -> str:
    """The address as it will be stored (its domain normalised), or InvalidField."""
    address = unicodedata.normalize("NFKC", raw).strip()
    try:
        if len(address) > EMAIL_MAX or not _encodable(address) or "\x00" in address:
            raise EmailNotValidError("too long, NUL or lone surrogates")
        return str(validate_email(address, check_deliverability=False).normalized)
    except (EmailNotValidError, UnicodeError):
        raise accounts.InvalidField("email", _("Enter a valid email address.")) from None


def email_key(address: str) -> str:
    """The form two addresses share when they differ only by case."""
    return unicodedata.normalize("NFKC", address.casefold())


async def add_address(user: User, address: str | None, connection: BaseDBAsyncClient) -> None:
    """Give user a new, unverified address (or none), and mail it its verification link."""
    key = email_key(address) if address else None
    users = User.filter(id=user.id).using_db(connection)
    try:
        await users.update(email=address, email_key=key, email_verified=False)
    except IntegrityError:
        raise EmailTaken() from None
    await RecoveryToken.filter(user_id=user.id, purpose=VERIFY).using_db(connection).delete()
    user.email, user.email_key, user.email_verified = address, key, False
    if address is None:
        return
    token = await _issue(user, VERIFY, "EMAIL_VERIFY_LIFETIME", connection, email_key=key)
    link = outbox.public_link(url_for("recovery.verify_email", token=token))
    await outbox.queue(
        address, "verify_email", user.locale, connection, link=link, username=user.username
    )


async def change_email(user: User, raw: str, password: str, client: str) -> None:
    """Set, change or (with "") remove user's address; the password is asked again."""
    address = clean_email(raw) if raw.strip() else None
    await accounts.reauthenticate(user, password, client)
    old = user.email if user.email_verified else None
    user.locale = current_language()
    # Through the sessions' transaction: the copies of user kept with sessions are dropped.
    async with sessions.ending(user.id) as change:
        connection = change.connection
        await User.filter(id=user.id).using_db(connection).update(locale=user.locale)
        await add_address(user, address, connection)
        if old is not None and email_key(old) != user.email_key:
            await outbox.queue(
                old, "email_changed", user.locale, connection, username=user.username, new=address
            )
    accounts.log_event("email_changed", user_id=user.id, ip=client, removed=address is None)


async def verify_email(token: str) -> User:
    """Mark the address a verification link names as verified, or InvalidToken."""
    row = await _valid(token, VERIFY)
    user = row.user
    if row.email_key != user.email_key:
        raise InvalidToken()
    # Deleting the row is the claim: of two clicks at once, one verifies.
    if not await RecoveryToken.filter(id=row.id).delete():
        raise InvalidToken()
    async with sessions.ending(user.id) as change:
        users = User.filter(id=user.id, email_key=row.email_key).using_db(change.connection)
        await users.update(email_verified=True)
    user.email_verified = True
    accounts.log_event("email_verified", user_id=user.id)
    return user


async def request_reset(identifier: str, client: str) -> None:
    """Mail a reset link if identifier (username or address) names a verified address.

    Says nothing of whether it did: the caller answers the same either way. The address
    is throttled (Throttled); the account's own limit silently stops the mails.
    """
    await _throttle().hit("PASSWORD_RESETS_PER_ADDRESS", client)
    user = await _find(identifier)
    if user is None or not user.is_active or not user.email or not user.email_verified:
        accounts.log_event("password_reset_requested", known_user=False, ip=client)
        return
    try:
        await _throttle().hit("PASSWORD_RESETS_PER_ACCOUNT", str(user.id))
    except Throttled:
        accounts.log_event("password_reset_throttled", user_id=user.id, ip=client)
        return
    async with in_transaction() as connection:
        # A newer link voids the older ones.
        await RecoveryToken.filter(user_id=user.id, purpose=RESET).using_db(connection).delete()
        token = await _issue(user, RESET, "PASSWORD_RESET_LIFETIME", connection)
        link = outbox.public_link(url_for("recovery.reset_password", token=token))
        await outbox.queue_to_user(user, "password_reset", connection, link=link)
    accounts.log_event("password_reset_requested", user_id=user.id, ip=client)


def digest(token: str) -> str:
    """What is stored of a token, and what a page keeps of it between requests."""
    return sessions.hash_key(token)


async def check_reset_link(token: str) -> str:
    """The digest of a reset link that may be used now, or InvalidToken."""
    return (await _valid(token, RESET)).token_hash


async def check_reset(token_digest: str) -> User:
    """The user a reset link (by its digest) may set a password for, or InvalidToken."""
    return (await _valid_digest(token_digest, RESET)).user


async def reset_password(token_digest: str, password: str, client: str) -> User:
    """Set a new password with a reset link; every session and token of the account ends."""
    row = await _valid_digest(token_digest, RESET)
    user = row.user
    accounts.check_password(password, user.username)

    async def use_up_and_tell(connection: BaseDBAsyncClient) -> None:
        if not await RecoveryToken.filter(id=row.id).using_db(connection).delete():
            raise InvalidToken()  # used by a request that came at the same moment
        await RecoveryToken.filter(user_id=user.id, purpose=RESET).using_db(connection).delete()
        await outbox.queue_to_user(user, "password_reset_done", connection)

    await accounts.set_password(user, password, "password_reset", within=use_up_and_tell)
    await accounts.clear_login_throttle(user)
    accounts.log_event("password_reset", user_id=user.id, username=user.username, ip=client)
    return user


async def _issue(
    user: User,
    purpose: str,
    lifetime_setting: str,
    connection: BaseDBAsyncClient,
    email_key: str | None = None,
) -> str:
    token = secrets.token_urlsafe(32)
    lifetime = timedelta(seconds=float(current_app.config[lifetime_setting]))
    await RecoveryToken.create(
        user_id=user.id,
        purpose=purpose,
        token_hash=digest(token),
        email_key=email_key,
        credential_generation=user.credential_generation,
        expires_at=datetime.now(UTC) + lifetime,
        using_db=connection,
    )
    return token


async def _valid(token: str, purpose: str) -> RecoveryToken:
    if not 16 <= len(token) <= 128 or not token.isascii():
        raise InvalidToken()
    return await _valid_digest(digest(token), purpose)


async def _valid_digest(token_digest: str, purpose: str) -> RecoveryToken:
    if len(token_digest) != 64 or not token_digest.isascii():
        raise InvalidToken()
    row = (
        await RecoveryToken.filter(token_hash=token_digest, purpose=purpose)
        .select_related("user")
        .first()
    )
    if (
        row is None
        or row.expires_at <= datetime.now(UTC)
        or not row.user.is_active
        or (purpose == RESET and row.credential_generation != row.user.credential_generation)
    ):
        raise InvalidToken()
    return row


async def _find(identifier: str) -> User | None:
    """The account a username or a verified address names."""
    text = identifier.strip()
    if not text or "\x00" in text or len(text) > EMAIL_MAX or not _encodable(text):
        return None
    if "@" in text:
        return await User.get_or_none(email_key=email_key(text), email_verified=True)
    key = accounts.username_key(text)
    return await User.get_or_none(username_key=key) if len(key) <= 4 * USERNAME_MAX else None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _throttle() -> Throttle:
    return cast(Throttle, current_app.extensions["throttle"])
