"""The JSON API of two-factor sign-in and passkeys, on the API's blueprint (`/api/...`).

Its routes join `api.bp` when this module is imported (by the package, before any app is
made), so they share the API's cross-site rule, error bodies and 401 answers. The pages'
passkey script (static/passkeys.js) uses the same routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, Field, StrictBool
from quart_babel import gettext as _
from quart_schema import document_response, security_scheme, validate_request, validate_response
from werkzeug.exceptions import NotFound

from . import accounts, passkeys, two_factor
from .api import (
    ID_MAX,
    SESSION,
    TOKEN,
    FieldError,
    Input,
    NoContent,
    Text,
    UserOut,
    ValidationFailed,
    WrongPassword,
    bp,
    errors,
)
from .login import client_address, confirm_login, current_user, login_required, login_user
from .models import Passkey, User
from .sessions import pending


class CodeIn(Input):
    code: Text = Field(max_length=64, description="A TOTP code or a recovery code.")


class PasswordIn(Input):
    password: Text = Field(max_length=4096)


class PasswordCodeIn(PasswordIn):
    code: Text = Field(max_length=64)


class CredentialIn(Input):
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of the browser.")


class PasskeyLoginIn(CredentialIn):
    remember: StrictBool = False


class PasskeyNewIn(CredentialIn):
    name: Text = Field(min_length=1, max_length=64)


class NameIn(Input):
    name: Text = Field(min_length=1, max_length=64)


class OptionsOut(BaseModel):
    options: dict[str, Any] = Field(description="For navigator.credentials (JSON form).")


class EnrolmentOut(BaseModel):
    secret: str = Field(description="Base32, for typing into an authenticator app.")
    uri: str = Field(description="The otpauth:// URI the QR code holds.")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Each works once; shown only in this response.")


class TwoFactorOut(BaseModel):
    enabled: bool
    recovery_codes_left: int
    passkeys: int


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: Passkey) -> PasskeyOut:
        return cls(
            id=row.id, name=row.name, created_at=row.created_at, last_used_at=row.last_used_at
        )


class PasskeyList(BaseModel):
    passkeys: list[PasskeyOut]


@bp.post("/login/two-factor")
@validate_request(CodeIn)
@validate_response(UserOut, 200)
@errors(400, 401, 413, 415, 422, 429)
async def login_second_step(data: CodeIn) -> UserOut:
    """Finish a login that answered `mfa_required` with a TOTP or recovery code."""
    user, row = await two_factor.second_step(data.code, client_address())
    await login_user(user, remember=row.remember)
    return UserOut.of(user)


@bp.post("/login/two-factor/passkey/options")
@validate_response(OptionsOut, 200)
@errors(401, 415)
async def login_second_step_passkey_options() -> OptionsOut:
    """Options to answer a pending login with one of its user's passkeys."""
    _row, user = await _pending()
    return OptionsOut(options=await passkeys.authentication_options("second", user))


@bp.post("/login/two-factor/passkey")
@validate_request(CredentialIn)
@validate_response(UserOut, 200)
@errors(400, 401, 413, 415, 422, 429)
async def login_second_step_passkey(data: CredentialIn) -> UserOut:
    """Finish a pending login with a passkey of its user."""
    row, user = await _pending()
    await two_factor.count_attempt(user, client_address())
    try:
        await passkeys.verify("second", data.credential, user, client_address())
    except passkeys.InvalidPasskey:
        if await pending.fail(row):
            raise two_factor.NoPendingLogin() from None
        raise
    await two_factor.finish(row, user, "passkey", client_address())
    await login_user(user, remember=row.remember)
    return UserOut.of(user)


@bp.post("/login/passkey/options")
@validate_response(OptionsOut, 200)
@errors(415)
async def login_passkey_options() -> OptionsOut:
    """Options to sign in with a passkey alone (any discoverable credential of this site)."""
    return OptionsOut(options=await passkeys.authentication_options("login", None))


@bp.post("/login/passkey")
@validate_request(PasskeyLoginIn)
@validate_response(UserOut, 200)
@errors(400, 401, 413, 415, 422, 429)
async def login_passkey(data: PasskeyLoginIn) -> UserOut:
    """Sign in with a passkey alone: it is both factors (possession and user verification)."""
    await passkeys.count_login(client_address())
    user = await passkeys.verify("login", data.credential, None, client_address())
    accounts.log_event(
        "login", user_id=user.id, username=user.username, ip=client_address(), factor="passkey"
    )
    await login_user(user, remember=data.remember)
    return UserOut.of(user)


@bp.post("/reauthenticate/passkey/options")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(OptionsOut, 200)
@errors(401, 415)
async def reauthenticate_passkey_options() -> OptionsOut:
    """Options to confirm this session with a passkey instead of the password."""
    return OptionsOut(options=await passkeys.authentication_options("reauth", _user()))


@bp.post("/reauthenticate/passkey")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(CredentialIn)
@document_response(NoContent, 204)
@errors(400, 401, 413, 415, 422)
async def reauthenticate_passkey(data: CredentialIn) -> tuple[str, int]:
    """Make this session fresh again with one of the user's passkeys."""
    await passkeys.verify("reauth", data.credential, _user(), client_address())
    accounts.log_event("reauthenticated", user_id=_user().id, ip=client_address(), factor="passkey")
    await confirm_login()
    return "", 204


@bp.get("/two-factor")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(TwoFactorOut, 200)
@errors(401)
async def two_factor_status() -> TwoFactorOut:
    """Whether two-factor sign-in is on, the recovery codes left, the passkeys."""
    found = await two_factor.status(_user())
    return TwoFactorOut(
        enabled=found.enabled,
        recovery_codes_left=found.recovery_codes_left,
        passkeys=found.passkeys,
    )


@bp.post("/two-factor/totp")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(PasswordIn)
@validate_response(EnrolmentOut, 200)
@errors(400, 401, 403, 409, 413, 415, 422, 429)
async def two_factor_start(data: PasswordIn) -> EnrolmentOut:
    """Start turning TOTP on: a new secret; it is on once `/confirm` gets a first code."""
    try:
        found = await two_factor.start_enrolment(_user(), data.password, client_address())
    except accounts.InvalidCredentials:
        raise WrongPassword() from None
    return EnrolmentOut(secret=found.secret, uri=found.uri)


@bp.post("/two-factor/totp/confirm")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(CodeIn)
@validate_response(RecoveryCodesOut, 200)
@errors(400, 401, 409, 413, 415, 422)
async def two_factor_confirm(data: CodeIn) -> RecoveryCodesOut:
    """Turn TOTP on with a first code; the 10 recovery codes, shown once."""
    return RecoveryCodesOut(
        recovery_codes=await two_factor.confirm(_user(), data.code, client_address())
    )


@bp.post("/two-factor/recovery-codes")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(PasswordCodeIn)
@validate_response(RecoveryCodesOut, 200)
@errors(400, 401, 403, 409, 413, 415, 422, 429)
async def two_factor_recovery_codes(data: PasswordCodeIn) -> RecoveryCodesOut:
    """New recovery codes (the old ones stop working); the password and a code asked."""
    try:
        codes = await two_factor.regenerate_codes(
            _user(), data.password, data.code, client_address()
        )
    except accounts.InvalidCredentials:
        raise WrongPassword() from None
    return RecoveryCodesOut(recovery_codes=codes)


@bp.post("/two-factor/disable")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(PasswordCodeIn)
@document_response(NoContent, 204)
@errors(400, 401, 403, 409, 413, 415, 422, 429)
async def two_factor_disable(data: PasswordCodeIn) -> tuple[str, int]:
    """Turn two-factor sign-in off; the password and a code asked."""
    try:
        await two_factor.disable(_user(), data.password, data.code, client_address())
    except accounts.InvalidCredentials:
        raise WrongPassword() from None
    return "", 204


@bp.get("/passkeys")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_response(PasskeyList, 200)
@errors(401)
async def list_passkeys() -> PasskeyList:
    """The user's passkeys."""
    return PasskeyList(passkeys=[PasskeyOut.of(p) for p in await passkeys.for_user(_user())])


@bp.post("/passkeys/options")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(PasswordIn)
@validate_response(OptionsOut, 200)
@errors(400, 401, 403, 413, 415, 422, 429)
async def passkey_options(data: PasswordIn) -> OptionsOut:
    """Options to create a passkey; the password is asked again."""
    try:
        options = await passkeys.registration_options(_user(), data.password, client_address())
    except accounts.InvalidCredentials:
        raise WrongPassword() from None
    return OptionsOut(options=options)


@bp.post("/passkeys")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(PasskeyNewIn)
@validate_response(PasskeyOut, 201)
@errors(400, 401, 413, 415, 422)
async def add_passkey(data: PasskeyNewIn) -> tuple[PasskeyOut, int]:
    """Keep the passkey the browser made with the options of `/passkeys/options`."""
    try:
        row = await passkeys.register(_user(), data.name, data.credential, client_address())
    except passkeys.InvalidName as error:
        raise _invalid_name(error) from None
    return PasskeyOut.of(row), 201


# No max= in the rule: two rules of one path whose converter refuses a value make werkzeug
# answer 405 instead of 404; too large an id is refused in the view instead.
@bp.patch("/passkeys/<int:passkey_id>")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(NameIn)
@validate_response(PasskeyOut, 200)
@errors(400, 401, 404, 413, 415, 422)
async def rename_passkey(passkey_id: int, data: NameIn) -> PasskeyOut:
    """Rename one of the user's passkeys."""
    _known(passkey_id)
    try:
        await passkeys.rename(_user(), passkey_id, data.name)
    except passkeys.InvalidName as error:
        raise _invalid_name(error) from None
    row = await Passkey.get(id=passkey_id)
    return PasskeyOut.of(row)


@bp.delete("/passkeys/<int:passkey_id>")
@login_required
@security_scheme([SESSION, TOKEN])
@validate_request(PasswordIn)
@document_response(NoContent, 204)
@errors(400, 401, 403, 404, 413, 415, 422, 429)
async def remove_passkey(passkey_id: int, data: PasswordIn) -> tuple[str, int]:
    """Remove one of the user's passkeys; the password is asked again."""
    _known(passkey_id)
    try:
        await passkeys.remove(_user(), passkey_id, data.password, client_address())
    except accounts.InvalidCredentials:
        raise WrongPassword() from None
    return "", 204


async def _pending() -> tuple[Any, User]:
    found = await pending.current()
    if found is None:
        raise two_factor.NoPendingLogin()
    return found


def _known(passkey_id: int) -> None:
    """Ids are 32-bit integers in every database: a larger one names nothing."""
    if passkey_id > ID_MAX:
        raise NotFound(_("No such passkey."))


def _invalid_name(error: passkeys.InvalidName) -> ValidationFailed:
    message = str(error.description)
    return ValidationFailed(message, [FieldError(field="name", message=message)])


def _user() -> User:
    return cast(User, current_user._get_current_object())
