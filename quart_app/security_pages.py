"""The pages of two-factor sign-in: the login's second step, TOTP and passkeys in /account/."""

from __future__ import annotations

from typing import cast

from quart import (
    Blueprint,
    ResponseReturnValue,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from quart_babel import gettext as _
from werkzeug.exceptions import HTTPException

from . import accounts, passkeys, two_factor
from .forms import CodeForm, PasskeyRemoveForm, PasskeyRenameForm, TotpCheckForm, TotpStartForm
from .i18n import _l
from .login import client_address, current_user, login_required, login_user
from .models import User
from .sessions import pending
from .throttle import Throttled

bp = Blueprint("security", __name__)
# The turn-off form shares its page with the new-codes form: its fields are off-password, ...
OFF = "off-"
ID = "<int(max=2147483647):passkey_id>"
WRONG_PASSWORD = _l("The password is not correct.")


@bp.route("/login/two-factor/", methods=["GET", "POST"])
async def second_step() -> ResponseReturnValue:
    """The second step of a login whose password passed: a code, or a passkey."""
    if current_user.is_authenticated:
        return redirect(url_for("views.index"))
    found = await pending.current()
    if found is None:
        await flash(_("Your login has expired. Please log in again."))
        return redirect(url_for("views.login"), 303)
    row, user = found
    form = await CodeForm.from_request()
    methods = await two_factor.methods(user)
    if request.method != "POST":  # GET, and HEAD like it
        return await _second_step_page(form, methods, 200, next_url=row.next_url)
    if not form.validate():
        return await _second_step_page(form, methods, 400, next_url=row.next_url)
    try:
        user, row = await two_factor.second_step(form.code.data, client_address())
    except Throttled as error:
        form.form_errors.append(error.description)
        return await _second_step_page(
            form, methods, 429, {"Retry-After": str(error.seconds)}, next_url=row.next_url
        )
    except two_factor.NoPendingLogin as error:
        await flash(str(error.description))
        return redirect(url_for("views.login"), 303)
    except two_factor.InvalidCode as error:
        form.code.errors = [str(error.description)]
        return await _second_step_page(form, methods, 401, next_url=row.next_url)
    await login_user(user, remember=row.remember)
    return redirect(row.next_url or url_for("views.index"), 303)


async def _second_step_page(
    form: CodeForm,
    methods: list[str],
    status: int,
    headers: dict[str, str] | None = None,
    next_url: str = "",
) -> ResponseReturnValue:
    form.code.data = ""  # a code is never sent back into the page
    body = await render_template(
        "second_step.html", form=form, methods=methods, next_url=next_url or url_for("views.index")
    )
    return body, status, headers or {}


@bp.get("/account/two-factor/")
@login_required
async def index() -> ResponseReturnValue:
    user = _user()
    return await render_template(
        "two_factor.html",
        status=await two_factor.status(user),
        enrolment=await two_factor.enrolment(user),
        start_form=await TotpStartForm.from_request(),
        code_form=await CodeForm.from_request(),
        check_form=await TotpCheckForm.from_request(),
        off_form=await TotpCheckForm.from_request(prefix=OFF),
    )


@bp.post("/account/two-factor/start")
@login_required
async def start() -> ResponseReturnValue:
    form = await TotpStartForm.from_request()
    if not form.validate():
        abort(400)
    try:
        await two_factor.start_enrolment(_user(), form.password.data, client_address())
    except accounts.InvalidCredentials:
        await flash(str(WRONG_PASSWORD))
        return redirect(url_for("security.index"), 303)
    return redirect(url_for("security.index") + "#enrol", 303)


@bp.post("/account/two-factor/confirm")
@login_required
async def confirm() -> ResponseReturnValue:
    form = await CodeForm.from_request()
    if not form.validate():
        abort(400)
    try:
        codes = await two_factor.confirm(_user(), form.code.data, client_address())
    except two_factor.InvalidCode as error:
        await flash(str(error.description))
        return redirect(url_for("security.index") + "#enrol", 303)
    return await _codes_page(codes, _("Two-factor sign-in is on."))


@bp.post("/account/two-factor/recovery-codes")
@login_required
async def recovery_codes() -> ResponseReturnValue:
    form = await TotpCheckForm.from_request()
    if not form.validate():
        abort(400)
    try:
        codes = await two_factor.regenerate_codes(
            _user(), form.password.data, form.code.data, client_address()
        )
    except (accounts.InvalidCredentials, two_factor.InvalidCode) as error:
        return await _refused(error)
    return await _codes_page(codes, _("New recovery codes: the old ones no longer work."))


@bp.post("/account/two-factor/disable")
@login_required
async def disable() -> ResponseReturnValue:
    form = await TotpCheckForm.from_request(prefix=OFF)
    if not form.validate():
        abort(400)
    try:
        await two_factor.disable(_user(), form.password.data, form.code.data, client_address())
    except (accounts.InvalidCredentials, two_factor.InvalidCode) as error:
        return await _refused(error)
    await flash(_("Two-factor sign-in is off."))
    return redirect(url_for("security.index"), 303)


async def _refused(error: HTTPException) -> ResponseReturnValue:
    wrong_password = isinstance(error, accounts.InvalidCredentials)
    await flash(str(WRONG_PASSWORD) if wrong_password else str(error.description))
    return redirect(url_for("security.index"), 303)


async def _codes_page(codes: list[str], message: str) -> ResponseReturnValue:
    # Rendered, not redirected: the codes are never kept anywhere to be shown again.
    return await render_template("recovery_codes.html", codes=codes, message=message)


@bp.get("/account/passkeys/")
@login_required
async def passkey_list() -> ResponseReturnValue:
    return await render_template(
        "passkeys.html",
        passkeys=await passkeys.for_user(_user()),
        rename_form=await PasskeyRenameForm.from_request(),
        remove_form=await PasskeyRemoveForm.from_request(),
    )


@bp.post(f"/account/passkeys/{ID}/rename")
@login_required
async def rename_passkey(passkey_id: int) -> ResponseReturnValue:
    form = await PasskeyRenameForm.from_request()
    if not form.validate():
        abort(400)
    await passkeys.rename(_user(), passkey_id, form.name.data)
    await flash(_("The passkey has been renamed."))
    return redirect(url_for("security.passkey_list"), 303)


@bp.post(f"/account/passkeys/{ID}/remove")
@login_required
async def remove_passkey(passkey_id: int) -> ResponseReturnValue:
    form = await PasskeyRemoveForm.from_request()
    if not form.validate():
        abort(400)
    try:
        await passkeys.remove(_user(), passkey_id, form.password.data, client_address())
    except accounts.InvalidCredentials:
        await flash(str(WRONG_PASSWORD))
    else:
        await flash(_("The passkey has been removed."))
    return redirect(url_for("security.passkey_list"), 303)


def _user() -> User:
    return cast(User, current_user._get_current_object())
