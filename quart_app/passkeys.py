"""Passkeys (WebAuthn, through py_webauthn): add, name, remove; sign in; second factor; confirm.

Every credential is discoverable and user-verified, so a passkey signs in on its own. The
relying party is PUBLIC_URL's host and origin. Each challenge is kept server-side, bound to
the browser session that asked for it (its key is in Quart's signed session), for one
purpose and one use, for five minutes.

py_webauthn (9.5 MiB with what it loads) is imported by the ceremonies that use it, so a
worker that never sees a passkey does not carry it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from quart import current_app, session
from quart_babel import gettext as _
from werkzeug.exceptions import BadRequest, NotFound, Unauthorized

from . import accounts
from .i18n import _l
from .models import Passkey, User, WebAuthnChallenge
from .sessions import hash_key
from .throttle import Throttle
from .two_factor import notify

RP_NAME = "quart_app"
CHALLENGE_LIFETIME = timedelta(minutes=5)
SESSION_KEY = "webauthn_challenge"
PURPOSES = ("register", "login", "second", "reauth")
TIMEOUT_MS = 120_000
NAME_MAX = 64


class InvalidPasskey(Unauthorized):
    """The one answer for a wrong, foreign, replayed or unknown passkey response."""

    error_code = "invalid_passkey"
    description = _l("The passkey could not be verified. Please try again.")


class InvalidName(BadRequest):
    error_code = "invalid_field"
    field = "name"


def bytes_to_base64url(data: bytes) -> str:
    """WebAuthn's encoding of bytes (RFC 4648 base64url, unpadded), as py_webauthn's."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def base64url_to_bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def relying_party() -> tuple[str, str]:
    """The relying party id (a host name) and the origin, both from PUBLIC_URL."""
    parts = urlsplit(str(current_app.config["PUBLIC_URL"]))
    return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"


def _user_handle(user: User) -> bytes:
    """An opaque handle for user, the same every time, that names nothing outside this site."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"passkey-user|{user.id}".encode(), hashlib.sha256).digest()


async def _new_challenge(purpose: str, user_id: int | None) -> bytes:
    """A challenge for this browser session alone; an earlier one of it is dropped."""
    await _drop_challenge()
    key = secrets.token_urlsafe(32)
    challenge = secrets.token_bytes(32)
    await WebAuthnChallenge.create(
        key_hash=hash_key(key),
        purpose=purpose,
        user_id=user_id,
        challenge=bytes_to_base64url(challenge),
        expires_at=datetime.now(UTC) + CHALLENGE_LIFETIME,
    )
    session[SESSION_KEY] = key
    return challenge


async def _drop_challenge() -> None:
    key = session.pop(SESSION_KEY, None)
    if isinstance(key, str):
        await WebAuthnChallenge.filter(key_hash=hash_key(key)).delete()


async def _take_challenge(purpose: str, user_id: int | None) -> bytes:
    """This session's challenge for purpose, used up now; InvalidPasskey if there is none."""
    key = session.pop(SESSION_KEY, None)
    if not isinstance(key, str):
        raise InvalidPasskey()
    row = await WebAuthnChallenge.get_or_none(key_hash=hash_key(key))
    # Deleted before it is checked: of two requests racing with one challenge, one wins.
    if row is None or not await WebAuthnChallenge.filter(id=row.id).delete():
        raise InvalidPasskey()
    if row.purpose != purpose or row.user_id != user_id or row.expires_at <= datetime.now(UTC):
        raise InvalidPasskey()
    return base64url_to_bytes(row.challenge)


def clean_name(raw: str) -> str:
    name = raw.strip()
    if not 1 <= len(name) <= NAME_MAX or "\x00" in name:
        raise InvalidName(_("Name must be 1 to %(max)d characters long.", max=NAME_MAX))
    return name


async def registration_options(user: User, password: str, client: str) -> dict[str, Any]:
    """Options for navigator.credentials.create(); the password is asked again first."""
    await accounts.reauthenticate(user, password, client)
    rp_id, _origin = relying_party()
    existing = await Passkey.filter(user_id=user.id).values_list("credential_id", flat=True)
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers import structs

    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user.username,
        user_id=_user_handle(user),
        challenge=await _new_challenge("register", user.id),
        timeout=TIMEOUT_MS,
        authenticator_selection=structs.AuthenticatorSelectionCriteria(
            resident_key=structs.ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=structs.UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            structs.PublicKeyCredentialDescriptor(id=base64url_to_bytes(str(c))) for c in existing
        ],
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


async def register(user: User, name: str, credential: Any, client: str) -> Passkey:
    """Verify the new credential against this session's challenge and keep it."""
    name = clean_name(name)
    challenge = await _take_challenge("register", user.id)
    rp_id, origin = relying_party()
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise InvalidPasskey() from None
    passkey = await Passkey.create(
        user_id=user.id,
        name=name,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
    )
    accounts.log_event("passkey_added", user_id=user.id, passkey_id=passkey.id, ip=client)
    await notify(user, "passkey_added", name=name)
    return passkey


async def authentication_options(purpose: str, user: User | None) -> dict[str, Any]:
    """Options for navigator.credentials.get(): any of this site's passkeys, or user's."""
    rp_id, _origin = relying_party()
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers import structs

    allowed: list[structs.PublicKeyCredentialDescriptor] = []
    if user is not None:
        ids = await Passkey.filter(user_id=user.id).values_list("credential_id", flat=True)
        descriptor = structs.PublicKeyCredentialDescriptor
        allowed = [descriptor(id=base64url_to_bytes(str(c))) for c in ids]
    options = generate_authentication_options(
        rp_id=rp_id,
        challenge=await _new_challenge(purpose, user.id if user is not None else None),
        timeout=TIMEOUT_MS,
        allow_credentials=allowed,
        user_verification=structs.UserVerificationRequirement.REQUIRED,
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


async def verify(purpose: str, credential: Any, user: User | None, client: str) -> User:
    """The user whose passkey signed this session's challenge (user's own, if given)."""
    challenge = await _take_challenge(purpose, user.id if user is not None else None)
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    passkey = None
    if isinstance(raw_id, str) and len(raw_id) <= 1400:
        passkey = await Passkey.get_or_none(credential_id=raw_id).prefetch_related("user")
    if passkey is None or (user is not None and passkey.user_id != user.id):
        accounts.log_event("passkey_failed", purpose=purpose, known=passkey is not None, ip=client)
        raise InvalidPasskey()
    rp_id, origin = relying_party()
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=base64url_to_bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError):
        accounts.log_event("passkey_failed", purpose=purpose, user_id=passkey.user_id, ip=client)
        raise InvalidPasskey() from None
    # The counter only moves forward: a cloned authenticator's older count is refused above.
    updated = await Passkey.filter(id=passkey.id, sign_count=passkey.sign_count).update(
        sign_count=verified.new_sign_count, last_used_at=datetime.now(UTC)
    )
    if not updated or not passkey.user.is_active:
        raise InvalidPasskey()
    accounts.log_event("passkey_used", purpose=purpose, user_id=passkey.user_id, ip=client)
    return passkey.user


async def count_login(client: str) -> None:
    """Throttle passkey sign-ins per address, as password logins are."""
    throttle = cast(Throttle, current_app.extensions["throttle"])
    await throttle.hit("LOGIN_ATTEMPTS_PER_ADDRESS", client)


async def for_user(user: User) -> list[Passkey]:
    return await Passkey.filter(user_id=user.id).order_by("created_at", "id")


async def rename(user: User, passkey_id: int, name: str) -> None:
    name = clean_name(name)
    if not await Passkey.filter(id=passkey_id, user_id=user.id).update(name=name):
        raise NotFound(_("No such passkey."))


async def remove(user: User, passkey_id: int, password: str, client: str) -> None:
    """Remove one of user's passkeys; the password is asked again."""
    await accounts.reauthenticate(user, password, client)
    passkey = await Passkey.get_or_none(id=passkey_id, user_id=user.id)
    if passkey is None or not await Passkey.filter(id=passkey.id).delete():
        raise NotFound(_("No such passkey."))
    accounts.log_event("passkey_removed", user_id=user.id, passkey_id=passkey_id, ip=client)
    await notify(user, "passkey_removed", name=passkey.name)
