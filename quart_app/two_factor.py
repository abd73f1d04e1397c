"""Two-factor sign-in: TOTP secrets (encrypted at rest), recovery codes, the second login step.

TOTP is RFC 6238 as phone apps read it (30 s, 6 digits, SHA-1), a step either side
accepted, and a step's code accepted once. Secrets are Fernet-encrypted under a key derived
from SECRET_KEY; older keys in SECRET_KEY_FALLBACKS still decrypt, and what they decrypt is
encrypted again under the current key. Recovery codes (80 random bits each) are kept as
SHA-256 digests and work once.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import pyotp
import segno
from quart import current_app
from tortoise.transactions import in_transaction
from werkzeug.exceptions import Conflict, Unauthorized

from . import accounts, compat, db, outbox
from .i18n import _l
from .models import Passkey, PendingLogin, RecoveryCode, TotpSecret, User
from .sessions import hash_key, pending
from .throttle import Throttle

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

ISSUER = "quart_app"
RECOVERY_CODES = 10
STEP_SECONDS = 30
CODE_MAX = 64
TOTP_PATTERN = re.compile(r"[0-9]{6}")
RECOVERY_PATTERN = re.compile(r"[A-Z2-7]{16}")
KEY_INFO = b"quart_app totp secrets"
# A step no real code has: checked against when a code matched nothing, for equal work.
NO_STEP = -1


class InvalidCode(Unauthorized):
    error_code = "invalid_code"
    description = _l("That code is not correct.")


class NoPendingLogin(Unauthorized):
    error_code = "no_pending_login"
    description = _l("Your login has expired. Please log in again.")


class AlreadyEnabled(Conflict):
    error_code = "two_factor_enabled"
    description = _l("Two-factor sign-in is already on.")


class NotEnabled(Conflict):
    error_code = "two_factor_disabled"
    description = _l("Two-factor sign-in is not on.")


@dataclass(frozen=True)
class Enrolment:
    """What the user needs to add the account to a phone app."""

    secret: str
    uri: str

    @property
    def qr_svg_data_uri(self) -> str:
        """The URI as a QR code: an SVG image made here, for an <img> (no script, no network)."""
        return str(segno.make(self.uri, error="m").svg_data_uri(scale=5, border=2))


@dataclass(frozen=True)
class Status:
    enabled: bool
    recovery_codes_left: int
    passkeys: int


async def notify(user: User, event: str, name: str = "", left: int = 0) -> None:
    """Tell the user of a sign-in event by mail, where the account has a verified address."""
    await outbox.queue_to_user(user, "security_event", event=event, name=name, left=left)


async def status(user: User) -> Status:
    row = await TotpSecret.get_or_none(user_id=user.id)
    left = await RecoveryCode.filter(user_id=user.id, used_at__isnull=True).count()
    keys = await Passkey.filter(user_id=user.id).count()
    return Status(row is not None and row.confirmed_at is not None, left, keys)


async def require_second_step(user: User, *, remember: bool, next_url: str) -> list[str]:
    """After the password: begin a pending login when user has two-factor on; its methods."""
    found = await methods(user)
    if found:
        await pending.begin(user, remember=remember, next_url=next_url)
        accounts.log_event("second_factor_required", user_id=user.id)
    return found


# Asked at every login.
_TOTP_ON = db.Statement(
    f"SELECT 1 FROM {compat.db_table(TotpSecret)}"  # noqa: S608  (a name from the model)
    " WHERE user_id = ? AND confirmed_at IS NOT NULL LIMIT 1"
)


async def methods(user: User) -> list[str]:
    """The second factors user must pass after the password; empty when two-factor is off."""
    if not await _TOTP_ON.rows(user.id):
        return []
    found = ["totp", "recovery_code"]
    if await Passkey.exists(user_id=user.id):
        found.append("passkey")
    return found


async def start_enrolment(user: User, password: str, client: str) -> Enrolment:
    """A new secret to scan (the password asked again); on only once a code confirms it."""
    await accounts.reauthenticate(user, password, client)
    row = await TotpSecret.get_or_none(user_id=user.id)
    if row is not None and row.confirmed_at is not None:
        raise AlreadyEnabled()
    secret = pyotp.random_base32()
    await TotpSecret.filter(user_id=user.id).delete()
    await TotpSecret.create(user_id=user.id, secret=encrypt(secret))
    return _enrolment(user, secret)


async def enrolment(user: User) -> Enrolment | None:
    """The enrolment user started and has not confirmed yet, if any."""
    row = await TotpSecret.get_or_none(user_id=user.id, confirmed_at__isnull=True)
    return None if row is None else _enrolment(user, await _secret(row))


def _enrolment(user: User, secret: str) -> Enrolment:
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)
    return Enrolment(secret, uri)


async def confirm(user: User, code: str, client: str) -> list[str]:
    """Turn two-factor on with a first code from the app; the recovery codes, shown once."""
    row = await TotpSecret.get_or_none(user_id=user.id)
    if row is None:
        raise NotEnabled()
    if row.confirmed_at is not None:
        raise AlreadyEnabled()
    if not await _accept_totp(row, _normalize(code)):
        accounts.log_event("two_factor_confirm_failed", user_id=user.id, ip=client)
        raise InvalidCode()
    await TotpSecret.filter(id=row.id).update(confirmed_at=datetime.now(UTC))
    codes = await _new_recovery_codes(user)
    accounts.log_event("two_factor_enabled", user_id=user.id, ip=client)
    await notify(user, "two_factor_enabled")
    return codes


async def regenerate_codes(user: User, password: str, code: str, client: str) -> list[str]:
    """New recovery codes (the old ones stop working); the password and a code asked."""
    await _recheck(user, password, code, client)
    codes = await _new_recovery_codes(user)
    accounts.log_event("recovery_codes_regenerated", user_id=user.id, ip=client)
    await notify(user, "recovery_codes_regenerated")
    return codes


async def disable(user: User, password: str, code: str, client: str) -> None:
    """Turn two-factor off; the password and a code asked."""
    await _recheck(user, password, code, client)
    async with in_transaction() as connection:
        await TotpSecret.filter(user_id=user.id).using_db(connection).delete()
        await RecoveryCode.filter(user_id=user.id).using_db(connection).delete()
    accounts.log_event("two_factor_disabled", user_id=user.id, ip=client)
    await notify(user, "two_factor_disabled")


async def _recheck(user: User, password: str, code: str, client: str) -> None:
    if not await methods(user):
        raise NotEnabled()
    await accounts.reauthenticate(user, password, client)
    if await check_code(user, code, client) is None:
        accounts.log_event("two_factor_check_failed", user_id=user.id, ip=client)
        raise InvalidCode()


async def check_code(user: User, code: str, client: str) -> str | None:
    """Which factor code is ("totp", "recovery_code"), once it is accepted; else None.

    A used code and a wrong one take the same path: the same queries, the same comparisons.
    """
    code = _normalize(code)
    if RECOVERY_PATTERN.fullmatch(code):
        used = await RecoveryCode.filter(
            user_id=user.id, code_hash=hash_key(code), used_at__isnull=True
        ).update(used_at=datetime.now(UTC))
        if not used:
            return None
        left = await RecoveryCode.filter(user_id=user.id, used_at__isnull=True).count()
        accounts.log_event("recovery_code_used", user_id=user.id, ip=client, left=left)
        await notify(user, "recovery_code_used", left=left)
        return "recovery_code"
    row = await TotpSecret.get_or_none(user_id=user.id, confirmed_at__isnull=False)
    if row is None:
        return None
    return "totp" if await _accept_totp(row, code) else None


async def _accept_totp(row: TotpSecret, code: str) -> bool:
    """True once for a code of the current step or one either side; never twice for a step."""
    totp = pyotp.TOTP(await _secret(row))
    now = int(time.time()) // STEP_SECONDS
    matched = NO_STEP
    for step in (now - 1, now, now + 1):
        # Every candidate compared, so the time taken does not tell which one matched.
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            matched = step
    # One conditional update either way: it refuses the step of an accepted code (a replay).
    accepted = await TotpSecret.filter(id=row.id, last_step__lt=matched).update(last_step=matched)
    return matched != NO_STEP and accepted > 0


async def second_step(code: str, client: str) -> tuple[User, PendingLogin]:
    """Finish this browser's pending login with a code; the user and what the login asked."""
    found = await pending.current()
    if found is None:
        raise NoPendingLogin()
    row, user = found
    await count_attempt(user, client)
    factor = await check_code(user, code, client)
    if factor is None:
        ended = await pending.fail(row)
        accounts.log_event("second_factor_failed", user_id=user.id, ip=client, ended=ended)
        raise NoPendingLogin() if ended else InvalidCode()
    return await finish(row, user, factor, client)


async def count_attempt(user: User, client: str) -> None:
    """Throttle the second step as logins are: per address, and per account."""
    throttle = cast(Throttle, current_app.extensions["throttle"])
    await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", client)
    await throttle.hit("LOGIN_FAILURES_PER_ACCOUNT", f"second-factor:{user.id}")


async def finish(
    row: PendingLogin, user: User, factor: str, client: str
) -> tuple[User, PendingLogin]:
    """End the pending login once its second factor passed; the caller then logs user in."""
    if not await pending.take(row):
        raise NoPendingLogin()  # finished meanwhile by another request
    throttle = cast(Throttle, current_app.extensions["throttle"])
    await throttle.clear("LOGIN_FAILURES_PER_ACCOUNT", f"second-factor:{user.id}")
    accounts.log_event("second_factor_passed", user_id=user.id, ip=client, factor=factor)
    return user, row


async def _new_recovery_codes(user: User) -> list[str]:
    codes = [base64.b32encode(secrets.token_bytes(10)).decode() for _ in range(RECOVERY_CODES)]
    async with in_transaction() as connection:
        await RecoveryCode.filter(user_id=user.id).using_db(connection).delete()
        await RecoveryCode.bulk_create(
            [RecoveryCode(user_id=user.id, code_hash=hash_key(code)) for code in codes],
            using_db=connection,
        )
    return ["-".join(code[i : i + 4] for i in range(0, 16, 4)) for code in codes]


def _normalize(code: str) -> str:
    """The code as typed, without spaces or dashes, upper case: "abcd-efgh..." -> "ABCDEFGH..."."""
    return re.sub(r"[\s-]", "", code[:CODE_MAX]).upper()


class UnreadableSecret(Exception):
    """A stored secret that neither SECRET_KEY nor any of SECRET_KEY_FALLBACKS decrypts."""


def _fernet(secret_key: str) -> Fernet:
    """A Fernet key derived from a secret key, for this one purpose.

    cryptography (5.5 MiB in each worker) is loaded by the first secret used, not at start.
    """
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO)
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())))


def encrypt(secret: str) -> str:
    return _fernet(current_app.config["SECRET_KEY"]).encrypt(secret.encode()).decode()


def decrypt(token: str) -> tuple[str, bool]:
    """The secret of token, and whether it was encrypted under an older key (a fallback).

    Raises UnreadableSecret when no configured key decrypts it.
    """
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(current_app.config["SECRET_KEY"]).decrypt(token).decode(), False
    except InvalidToken:
        pass
    for old in current_app.config["SECRET_KEY_FALLBACKS"]:
        try:
            return _fernet(str(old)).decrypt(token).decode(), True
        except InvalidToken:
            continue
    raise UnreadableSecret()


async def reencrypt_all() -> tuple[int, int]:
    """Encrypt every TOTP secret under the current key; (re-encrypted, unreadable) counts.

    Run after a key rotation, so the old key can leave SECRET_KEY_FALLBACKS.
    """
    moved = unreadable = 0
    for row in await TotpSecret.all():
        try:
            secret, old = decrypt(row.secret)
        except UnreadableSecret:
            unreadable += 1
            continue
        if old:
            await TotpSecret.filter(id=row.id).update(secret=encrypt(secret))
            moved += 1
    return moved, unreadable


async def _secret(row: TotpSecret) -> str:
    """The row's secret; encrypted again under the current key if an older one was used."""
    secret, old = decrypt(row.secret)
    if old:
        row.secret = encrypt(secret)
        await TotpSecret.filter(id=row.id).update(secret=row.secret)
    return secret
