"""The HTML forms, with WTForms' session-bound CSRF token on every one of them."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any, Self

from quart import current_app, request, session
from quart_babel import gettext as _
from wtforms import BooleanField, Form, PasswordField, StringField
from wtforms.csrf.session import SessionCSRF
from wtforms.fields import EmailField
from wtforms.validators import EqualTo, InputRequired, Length, Optional, ValidationError

from .i18n import _l

REQUIRED = InputRequired(_l("This field is required."))
MATCHES = EqualTo("password", _l("Passwords do not match."))
CSRF_FAILED = _l("The form has expired or did not come from this site. Please try again.")
# Characters no browser sends on its own: a NUL, or the mark of undecodable bytes.
FORBIDDEN = ("\x00", "\ufffd")


def _printable(form: Form, field: Any) -> None:
    if isinstance(field.data, str) and any(char in field.data for char in FORBIDDEN):
        raise ValidationError(_("Contains characters that are not allowed."))


class CSRFForm(Form):  # type: ignore[misc]
    """A form whose token is an HMAC of a secret kept in the user's Quart session."""

    class Meta:
        csrf = True
        csrf_class = SessionCSRF
        csrf_time_limit = timedelta(hours=12)

    @classmethod
    async def from_request(cls, prefix: str = "") -> Self:
        """Bind the form to this request's POST data (or none on GET)."""
        formdata = await request.form if request.method == "POST" else None
        return cls(formdata=formdata, meta=_csrf_meta(), prefix=prefix)

    @property
    def csrf_failed(self) -> bool:
        return bool(self.csrf_token.errors)

    def clear_passwords(self) -> None:
        """Never send a password back into the page."""
        for field in self:
            if isinstance(field, PasswordField):
                field.data = ""


class LoginForm(CSRFForm):
    username = StringField(_l("Username"), [REQUIRED, _printable])
    password = PasswordField(_l("Password"), [REQUIRED, _printable])
    remember = BooleanField(_l("Remember me"))


class RegisterForm(CSRFForm):
    username = StringField(_l("Username"), [REQUIRED, _printable])
    email = EmailField(
        _l("Email (optional, to reset a forgotten password)"), [Optional(), _printable]
    )
    password = PasswordField(_l("Password"), [REQUIRED, _printable])
    password_confirm = PasswordField(_l("Confirm password"), [REQUIRED, MATCHES])


class LogoutForm(CSRFForm):
    pass


class EndSessionForm(CSRFForm):
    pass


class ConfirmForm(CSRFForm):
    password = PasswordField(_l("Password"), [REQUIRED, _printable])


class PasswordForm(CSRFForm):
    current_password = PasswordField(_l("Current password"), [REQUIRED, _printable])
    password = PasswordField(_l("New password"), [REQUIRED, _printable])
    password_confirm = PasswordField(_l("Confirm new password"), [REQUIRED, MATCHES])


class CodeForm(CSRFForm):
    code = StringField(_l("Code"), [REQUIRED, _printable])


class TotpStartForm(CSRFForm):
    password = PasswordField(_l("Password"), [REQUIRED, _printable])


class TotpCheckForm(CSRFForm):
    password = PasswordField(_l("Password"), [REQUIRED, _printable])
    code = StringField(_l("Code from your app, or a recovery code"), [REQUIRED, _printable])


class PasskeyRenameForm(CSRFForm):
    name = StringField(_l("Name"), [REQUIRED, _printable, Length(max=64)])


class PasskeyRemoveForm(CSRFForm):
    password = PasswordField(_l("Password"), [REQUIRED, _printable])


def _csrf_meta() -> dict[str, Any]:
    return {"csrf_secret": current_app.config["SECRET_KEY"].encode(), "csrf_context": session}


def logout_csrf_token() -> str:
    """A token for the logout button every page header carries.

    LogoutForm's own token (the same SessionCSRF, secret, session and time limit, so the
    form validates it), made without building the form and its fields on every page.
    """
    csrf = SessionCSRF()
    csrf.form_meta = SimpleNamespace(**_csrf_meta(), csrf_time_limit=CSRFForm.Meta.csrf_time_limit)
    return str(csrf.generate_csrf_token(None))


class ForgotForm(CSRFForm):
    identifier = StringField(_l("Username or email"), [REQUIRED, _printable])


class ResetForm(CSRFForm):
    password = PasswordField(_l("New password"), [REQUIRED, _printable])
    password_confirm = PasswordField(_l("Confirm new password"), [REQUIRED, MATCHES])


class EmailForm(CSRFForm):
    email = EmailField(_l("Email address (empty to remove it)"), [Optional(), _printable])
    password = PasswordField(_l("Password"), [REQUIRED, _printable])
