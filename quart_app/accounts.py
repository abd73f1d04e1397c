"""The accounts service: registration and authentication rules, shared by pages and API."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast

from quart import current_app, has_app_context
from quart_babel import gettext as _
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction
from werkzeug.exceptions import BadRequest, Conflict, Unauthorized

from . import compat, db, sessions, tokens, usernames
from .i18n import _l, current_language
from .models import USERNAME_MAX, User
from .passwords import PasswordHasher, normalize
from .throttle import Throttle, Throttled, issue_device_cookie
from .throttle import device_of as throttle_device_of

logger = logging.getLogger("quart_app.auth")
# Writes that go in the transaction of a credential change.
Within = Callable[[BaseDBAsyncClient], Awaitable[None]]

PASSWORD_MIN = 8
PASSWORD_MAX = 1024
LOGIN_FAILED = _l("Invalid username or password.")
# One password a line, most common first, under a one-line header naming the source.
COMMON_PASSWORDS_FILE = "data/common-passwords.txt"


class InvalidField(BadRequest):
    """A submitted field breaks a rule; `field` names it for the form or the JSON error."""

    error_code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UsernameTaken(Conflict):
    error_code = "username_taken"
    description = _l("That username is already taken.")
    field = "username"


class InvalidCredentials(Unauthorized):
    """The one answer for an unknown user, a wrong password and a disabled account."""

    error_code = "invalid_credentials"
    description = LOGIN_FAILED


@cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of zxcvbn's list (Xato's 10M-password corpus)."""
    path = resources.files("quart_app").joinpath(COMMON_PASSWORDS_FILE)
    _header, *passwords = path.read_text(encoding="utf-8").splitlines()
    return frozenset(passwords)


def username_key(username: str) -> str:
    """The PRECIS UsernameCaseMapped form (RFC 8265): unique among the users, by case and width.

    Raises InvalidField when the profile refuses username.
    """
    return clean_name(username).key


def clean_username(raw: str) -> str:
    """The username as it will be stored and shown, or InvalidField."""
    return clean_name(raw).shown


def clean_name(raw: str) -> usernames.Username:
    """The name as shown, its key and its look-alike skeleton, or InvalidField.

    RFC 8265's UsernameCasePreserved profile, letters, digits and "_-." only, and UTS #39's
    restriction level (USERNAME_RESTRICTION_LEVEL: no Latin mixed with Cyrillic, say).
    """
    level = (
        current_app.config["USERNAME_RESTRICTION_LEVEL"]
        if has_app_context()
        else usernames.DEFAULT_RESTRICTION_LEVEL
    )
    try:
        return usernames.clean(raw, level)
    except usernames.RefusedUsername as error:
        raise InvalidField("username", str(error.message)) from None


def check_password(password: str, username: str) -> None:
    """Apply NIST SP 800-63B: length, not common, not the username; no composition rules."""
    if "\x00" in password:
        raise InvalidField("password", _("Password must not contain NUL characters."))
    if not _encodable(password):
        raise InvalidField("password", _("Password contains characters that are not allowed."))
    normalized = normalize(password)
    if not PASSWORD_MIN <= len(normalized) <= PASSWORD_MAX or len(password) > PASSWORD_MAX:
        raise InvalidField(
            "password",
            _(
                "Password must be %(min)d to %(max)d characters long.",
                min=PASSWORD_MIN,
                max=PASSWORD_MAX,
            ),
        )
    folded = normalized.casefold()
    if folded in common_passwords():
        raise InvalidField("password", _("This password is too common. Please choose another."))
    if usernames.legacy_key(username) in folded:
        raise InvalidField("password", _("Password must not contain the username."))


async def register(raw_username: str, password: str, client: str, email: str | None = None) -> User:
    """Create an account, or raise InvalidField, UsernameTaken, EmailTaken or Throttled.

    With an email address, its verification link is mailed in the same transaction.
    """
    from . import recovery  # recovery builds on this module

    name = clean_name(raw_username)
    check_password(password, name.shown)
    address = recovery.clean_email(email) if email and email.strip() else None
    try:
        await _throttle().hit("REGISTRATIONS_PER_ADDRESS", client)
    except Throttled:
        log_event("register_throttled", ip=client)
        raise
    user = await _insert(name, await _hasher().hash(password), address)
    log_event("register", user_id=user.id, username=user.username, ip=client)
    return user


async def create_user(username: str, password: str, email: str | None = None) -> User:
    """Insert an account whose name, password and address already passed the rules."""
    return await store_user(username, await _hasher().hash(password), email)


async def store_user(username: str, password_hash: str, email: str | None = None) -> User:
    """Insert an account with its password already hashed; the name's keys decide uniqueness."""
    return await _insert(clean_name(username), password_hash, email)


async def _insert(name: usernames.Username, password_hash: str, email: str | None) -> User:
    from . import recovery

    if email is None:
        return await _create(name, password_hash, None)  # one insert: atomic on its own
    async with in_transaction() as connection:
        user = await _create(name, password_hash, connection)
        await recovery.add_address(user, email, connection)
    return user


async def _create(
    name: usernames.Username, password_hash: str, connection: BaseDBAsyncClient | None
) -> User:
    try:
        # The unique indexes decide between two registrations of one name, or of two
        # names that look alike.
        return await User.create(
            username=name.shown,
            username_key=name.key,
            username_skeleton=name.skeleton,
            password_hash=password_hash,
            locale=current_language(),
            using_db=connection,
        )
    except IntegrityError:
        raise UsernameTaken() from None


async def authenticate(raw_username: str, password: str, client: str) -> User:
    """The user these credentials name, or InvalidCredentials or Throttled."""
    # Counted by the key of before the PRECIS rule, which every name has, so the device
    # cookies and counters of the accounts made before it stay theirs.
    fold = usernames.legacy_key(raw_username)
    attempt = await _count_attempt(fold, client, "login_throttled")
    hasher = _hasher()
    user = await find_user(raw_username)
    started = time.perf_counter()
    if user is None or "\x00" in password or len(password) > PASSWORD_MAX:
        await hasher.dummy_verify(password[:PASSWORD_MAX])
        await hasher.answer_failure(started)
        log_event("login_failed", known_user=False, ip=client)
        raise InvalidCredentials()
    await _verify(user, password, attempt, client, "login_failed", started)
    log_event("login", user_id=user.id, username=user.username, ip=client)
    return user


async def find_user(raw_username: str) -> User | None:
    """The account a typed name means: by its PRECIS key, else by the key of before.

    Accounts made before the PRECIS rule keep the key they had (NFKC and case folding:
    "strasse" for "Straße", where PRECIS gives "straße"), and some of their names (one
    ending in U+3164) have no PRECIS form at all.
    """
    if len(raw_username) > 16 * USERNAME_MAX:
        return None  # no name of an account is that long, whatever its normal form
    keys = [usernames.legacy_key(raw_username)]
    with contextlib.suppress(usernames.RefusedUsername):
        keys.insert(0, usernames.key(raw_username))
    # A key no account can have is not looked up (PostgreSQL refuses NUL in text).
    keys = [
        key
        for key in dict.fromkeys(keys)
        if 0 < len(key) <= 4 * USERNAME_MAX and "\x00" not in key and _encodable(key)
    ]
    if not keys:
        return None
    rows = await _users_by_key().rows(keys[0], keys[-1])
    found = {row["username_key"]: compat.model_from_row(User, row, "") for row in rows}
    return next((found[key] for key in keys if key in found), None)


@cache
def _users_by_key() -> db.Statement:
    """The accounts of one or two name keys; asked at every login."""
    columns = ", ".join(f'"{c}"' for c in sorted(compat.db_columns(User)))
    return db.Statement(
        f"SELECT {columns} FROM {compat.db_table(User)}"  # noqa: S608  (names from the model)
        ' WHERE "username_key" IN (?, ?)'
    )


async def reauthenticate(user: User, password: str, client: str) -> None:
    """Check the password of a logged-in user again (confirm, password change, new token).

    Throttled and counted like a login, but not a login: it starts nothing and is logged
    as a check.
    """
    fold = usernames.legacy_key(user.username)
    attempt = await _count_attempt(fold, client, "reauthenticate_throttled")
    started = time.perf_counter()
    if "\x00" in password or len(password) > PASSWORD_MAX:
        await _hasher().dummy_verify(password[:PASSWORD_MAX])
        await _hasher().answer_failure(started)
        log_event("reauthenticate_failed", user_id=user.id, ip=client)
        raise InvalidCredentials()
    await _verify(user, password, attempt, client, "reauthenticate_failed", started)
    log_event("reauthenticated", user_id=user.id, ip=client)


@dataclass(frozen=True)
class _Attempt:
    account: str  # the account's digest: the limiter's key, and the device cookie's
    counter: tuple[str, str]  # the limit this client's failures count against, and its key


async def _count_attempt(key: str, client: str, throttled_event: str) -> _Attempt:
    """Count an attempt against the address and the account (or device) before the check."""
    throttle = _throttle()
    account = _account_digest(key)
    # A client that logged in to this account before counts its failures alone; all the
    # others share the account's limit, which then cannot lock that client out.
    device = throttle_device_of(account)
    counter = (
        ("LOGIN_FAILURES_PER_DEVICE", device) if device else ("LOGIN_FAILURES_PER_ACCOUNT", account)
    )
    try:
        await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", client)
        # Counted before the check, so parallel guesses cannot slip past the limit.
        await throttle.hit(*counter)
    except Throttled:
        log_event(throttled_event, ip=client, device=device is not None)
        raise
    return _Attempt(account, counter)


async def _verify(
    user: User, password: str, attempt: _Attempt, client: str, failed_event: str, started: float
) -> None:
    """Check user's password (upgrading an old hash), or InvalidCredentials."""
    hasher = _hasher()
    if not await hasher.verify(user.password_hash, password) or not user.is_active:
        await hasher.answer_failure(started)
        log_event(failed_event, user_id=user.id, ip=client)
        raise InvalidCredentials()
    await _throttle().clear(*attempt.counter)
    issue_device_cookie(attempt.account)
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = await hasher.hash(password)
        await User.filter(id=user.id).update(password_hash=user.password_hash)


async def change_password(
    user: User, current: str, new: str, client: str, keep_session: int | None
) -> None:
    """Replace user's password; every other session and every API token ends."""
    try:
        await reauthenticate(user, current, client)
    except InvalidCredentials:
        raise InvalidField("current_password", _("The current password is not correct.")) from None
    check_password(new, user.username)
    await set_password(user, new, "password_changed", keep_session=keep_session)
    log_event("password_changed", user_id=user.id, ip=client)


async def set_password(
    user: User,
    password: str,
    reason: str,
    keep_session: int | None = None,
    within: Within | None = None,
) -> None:
    """Save a new password and end what the old one made, in one transaction.

    Every session (but keep_session) and every API token ends; the credential generation
    moves on, so a login that checked the old password meanwhile makes a dead session.
    within makes the writes that belong with the change (a reset link used up, a notice
    queued) in the same transaction; what it raises undoes everything.
    """
    password_hash = await _hasher().hash(password)
    await _replace_credentials(user, reason, keep_session, within, password_hash=password_hash)
    user.password_hash = password_hash


async def disable(user: User) -> None:
    """Stop an account from logging in, and end everything it is logged in with."""
    await _replace_credentials(user, "disabled", None, None, is_active=False)
    user.is_active = False
    log_event("disable", user_id=user.id, username=user.username)


async def end_all_logins(user: User, reason: str, keep_session: int | None = None) -> None:
    """End every session (but keep_session) and every API token of user."""
    await _replace_credentials(user, reason, keep_session, None)


async def _replace_credentials(
    user: User, reason: str, keep_session: int | None, within: Within | None, **fields: Any
) -> None:
    async with sessions.ending(user.id) as ending:
        if within is not None:
            await within(ending.connection)
        users = User.filter(id=user.id).using_db(ending.connection)
        await users.update(credential_generation=F("credential_generation") + 1, **fields)
        (generation,) = await users.values_list("credential_generation", flat=True)
        await ending.all(reason, keep=keep_session, generation=cast(int, generation))
        await tokens.end_all(user, ending.connection)
    user.credential_generation = cast(int, generation)


async def clear_login_throttle(user: User) -> None:
    """Forget the account's failed logins (after a password reset)."""
    await _throttle().clear("LOGIN_FAILURES_PER_ACCOUNT", _account_digest(user.username_key))


def _account_digest(key: str) -> str:
    # A digest keeps the limiter's keys short whatever length of name is sent.
    return hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()


def log_event(event: str, **fields: Any) -> None:
    """One JSON line per authentication event; never a password, hash or session key."""
    logger.info(json.dumps({"event": event, **fields}, ensure_ascii=False, sort_keys=True))


def _encodable(text: str) -> bool:
    """False for text with lone surrogates, which no database or hash can take."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _hasher() -> PasswordHasher:
    return cast(PasswordHasher, current_app.extensions["password_hasher"])


def _throttle() -> Throttle:
    return cast(Throttle, current_app.extensions["throttle"])
