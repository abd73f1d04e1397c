"""The JSON API of password reset: ask for a link, set a new password with its token."""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart_schema import document_response, validate_request, validate_response

from . import accounts, recovery
from .api import FieldError, Input, NoContent, Text, ValidationFailed, bp, errors
from .login import client_address


class ResetRequestIn(Input):
    identifier: Text = Field(max_length=4096, description="A username or an email address.")


class ResetConfirmIn(Input):
    token: Text = Field(max_length=4096)
    password: Text = Field(max_length=4096)


class AcceptedOut(BaseModel):
    message: str


@bp.post("/password-reset")
@validate_request(ResetRequestIn)
@validate_response(AcceptedOut, 202)
@errors(400, 413, 415, 422, 429)
async def password_reset(data: ResetRequestIn) -> tuple[AcceptedOut, int]:
    """Mail a reset link to the account's verified address; the same answer for any name."""
    await recovery.request_reset(data.identifier, client=client_address())
    return AcceptedOut(message=str(recovery.RESET_SENT)), 202


@bp.post("/password-reset/confirm")
@validate_request(ResetConfirmIn)
@document_response(NoContent, 204)
@errors(400, 413, 415, 422)
async def password_reset_confirm(data: ResetConfirmIn) -> tuple[str, int]:
    """Set a new password with a reset link's token (400 `invalid_token` when it is not valid).

    Every session and API token of the account ends.
    """
    link_digest = await recovery.check_reset_link(data.token)
    try:
        await recovery.reset_password(link_digest, data.password, client=client_address())
    except accounts.InvalidField as error:
        raise ValidationFailed(
            str(error.description), [FieldError(field=error.field, message=str(error.description))]
        ) from None
    return "", 204
