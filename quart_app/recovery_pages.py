"""The pages of account recovery: forgotten password, reset, the address and its check."""

from __future__ import annotations

from typing import cast

from quart import (
    Blueprint,
    ResponseReturnValue,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from quart_babel import gettext as _

from . import accounts, recovery
from .forms import CSRF_FAILED, EmailForm, ForgotForm, ResetForm
from .login import client_address, current_user, login_required
from .models import User
from .throttle import Throttled

bp = Blueprint("recovery", __name__)
# The Quart session keeps a reset link's digest (never the token) between its two pages.
RESET_KEY = "reset_token"


@bp.route("/forgot-password/", methods=["GET", "POST"])
async def forgot_password() -> ResponseReturnValue:
    form = await ForgotForm.from_request()
    if request.method != "POST":  # GET, and HEAD like it
        return await render_template("forgot.html", form=form)
    if not form.validate():
        if form.csrf_failed:
            form.form_errors.append(CSRF_FAILED)
        return await render_template("forgot.html", form=form), 400
    try:
        await recovery.request_reset(form.identifier.data, client=client_address())
    except Throttled as error:
        form.form_errors.append(error.description)
        body = await render_template("forgot.html", form=form)
        return body, 429, {"Retry-After": str(error.seconds)}
    # The same page whether or not an account matched.
    form.identifier.data = ""
    return await render_template("forgot.html", form=form, sent=recovery.RESET_SENT)


@bp.get("/reset-password/<token>")
async def reset_password(token: str) -> ResponseReturnValue:
    """Keep the link's digest in the session and drop the token from the address bar."""
    try:
        session[RESET_KEY] = await recovery.check_reset_link(token)
    except recovery.InvalidToken as error:
        return await _invalid(error)
    return redirect(url_for("recovery.new_password"))


@bp.route("/reset-password/", methods=["GET", "POST"])
async def new_password() -> ResponseReturnValue:
    token_digest = session.get(RESET_KEY)
    form = await ResetForm.from_request()
    try:
        user = await recovery.check_reset(token_digest if isinstance(token_digest, str) else "")
    except recovery.InvalidToken as error:
        session.pop(RESET_KEY, None)
        return await _invalid(error)
    if request.method != "POST":
        return await render_template("reset.html", form=form, user=user)
    if form.validate():
        try:
            await recovery.reset_password(
                cast(str, token_digest), form.password.data, client=client_address()
            )
        except accounts.InvalidField as error:
            form[error.field].errors = [*form[error.field].errors, error.description]
        except recovery.InvalidToken as error:
            session.pop(RESET_KEY, None)
            return await _invalid(error)
        else:
            session.pop(RESET_KEY, None)
            await flash(_("Your password has been reset. Log in with the new one."))
            return redirect(url_for("views.login"), 303)
    if form.csrf_failed:
        form.form_errors.append(CSRF_FAILED)
    form.clear_passwords()
    return await render_template("reset.html", form=form, user=user), 400


async def _invalid(error: recovery.InvalidToken) -> ResponseReturnValue:
    """A bad, used or expired link: say so, with the way to ask for another."""
    body = await render_template(
        "link_invalid.html",
        message=error.description,
        again_url=url_for("recovery.forgot_password"),
        again_text=_("Ask for a new link"),
    )
    return body, 400


@bp.get("/verify-email/<token>")
async def verify_email(token: str) -> ResponseReturnValue:
    try:
        await recovery.verify_email(token)
    except recovery.InvalidToken:
        body = await render_template(
            "link_invalid.html",
            message=_("This verification link is not valid any more."),
            again_url=url_for("recovery.email"),
            again_text=_("Get a new link from your account"),
        )
        return body, 400
    await flash(_("Your email address is verified."))
    target = "recovery.email" if current_user.is_authenticated else "views.login"
    return redirect(url_for(target))


@bp.route("/account/email/", methods=["GET", "POST"])
@login_required
async def email() -> ResponseReturnValue:
    user = cast(User, current_user._get_current_object())
    form = await EmailForm.from_request()
    if request.method != "POST":
        form.email.data = user.email or ""
        return await render_template("email.html", form=form)
    status = 400
    if form.validate():
        try:
            await recovery.change_email(
                user, form.email.data or "", form.password.data, client=client_address()
            )
        except accounts.InvalidCredentials:
            form.password.errors = [_("The password is not correct.")]
            status = 401
        except (accounts.InvalidField, recovery.EmailTaken) as error:
            form[error.field].errors = [*form[error.field].errors, error.description]
        except Throttled as error:
            form.form_errors.append(error.description)
            status = 429
        else:
            await flash(
                _("We sent a verification link to %(email)s.", email=user.email)
                if user.email
                else _("Your email address has been removed.")
            )
            return redirect(url_for("recovery.email"), 303)
    if form.csrf_failed:
        form.form_errors.append(CSRF_FAILED)
    form.clear_passwords()
    return await render_template("email.html", form=form), status
