"""The account pages: where you are logged in, ending sessions, the password; the live socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
    websocket,
)
from quart_babel import gettext as _

from . import accounts, devices, passkeys, sessions
from .forms import ConfirmForm, EndSessionForm, PasswordForm
from .login import (
    client_address,
    confirm_login,
    current_session,
    current_user,
    fresh_login_required,
    login_required,
)
from .models import User
from .redirects import safe_next
from .throttle import Throttled

bp = Blueprint("account", __name__)
PAGE_SIZE = 50


@bp.get("/account/")
@login_required
async def index() -> ResponseReturnValue:
    number = request.args.get("page", 1, type=int) or 1
    if number < 1:
        abort(404)
    rows, more = await sessions.page(_user().id, number, PAGE_SIZE)
    current = current_session()
    return await render_template(
        "account.html",
        sessions=[(row, devices.label(row.device)) for row in rows],
        current_id=current.id if current is not None else None,
        page=number,
        more=more,
        form=await EndSessionForm.from_request(),
    )


@bp.post("/account/sessions/<int(max=2147483647):session_id>/end")
@fresh_login_required
async def end_session(session_id: int) -> ResponseReturnValue:
    form = await EndSessionForm.from_request()
    if not form.validate():
        abort(400)
    if await sessions.end_one(_user().id, session_id, "ended_elsewhere"):
        await flash(_("The session has been ended."))
    return redirect(url_for("account.index"), 303)


@bp.post("/account/sessions/end-others")
@fresh_login_required
async def end_other_sessions() -> ResponseReturnValue:
    form = await EndSessionForm.from_request()
    if not form.validate():
        abort(400)
    ended = await sessions.end_all(_user().id, "ended_elsewhere", keep=_current_session_id())
    await flash(_("Logged out of %(count)d other session(s).", count=ended))
    return redirect(url_for("account.index"), 303)


@bp.route("/account/password/", methods=["GET", "POST"])
@fresh_login_required
async def password() -> ResponseReturnValue:
    form = await PasswordForm.from_request()
    if request.method != "POST":  # GET, and HEAD like it
        return await render_template("password.html", form=form)
    status = 400
    if form.validate():
        try:
            await accounts.change_password(
                _user(),
                form.current_password.data,
                form.password.data,
                client=client_address(),
                keep_session=_current_session_id(),
            )
        except accounts.InvalidField as error:
            form[error.field].errors = [*form[error.field].errors, error.description]
        except Throttled as error:
            form.form_errors.append(error.description)
            status = 429
        else:
            await flash(_("Your password has been changed. Your other sessions have ended."))
            return redirect(url_for("account.index"), 303)
    if form.csrf_failed:
        form.form_errors.append(_("The form has expired. Please try again."))
    form.clear_passwords()
    return await render_template("password.html", form=form), status


@bp.route("/account/confirm/", methods=["GET", "POST"])
@login_required
async def confirm() -> ResponseReturnValue:
    """Flask-Login's refresh view: re-enter the password to make the session fresh."""
    form = await ConfirmForm.from_request()
    target = safe_next(request.args.get("next"))
    if request.method != "POST":  # GET, and HEAD like it
        return await _confirm_page(form)
    status = 400
    if form.validate():
        try:
            await accounts.reauthenticate(_user(), form.password.data, client=client_address())
        except accounts.InvalidCredentials:
            form.password.errors = [_("The password is not correct.")]
            status = 401
        except Throttled as error:
            form.form_errors.append(error.description)
            status = 429
        else:
            await confirm_login()
            return redirect(target, 303)
    form.clear_passwords()
    return await _confirm_page(form), status


async def _confirm_page(form: ConfirmForm) -> str:
    """The confirm form; a passkey button too when the user has one."""
    return await render_template(
        "confirm.html",
        form=form,
        next=request.args.get("next"),
        has_passkeys=bool(await passkeys.for_user(_user())),
    )


@bp.websocket("/ws/session")
async def session_socket() -> None:
    """Tell the page when its session ends, so it can go to the login page by itself."""
    session = current_session()
    if session is None:
        abort(401)  # refused before the handshake completes
    await websocket.accept()
    ended = asyncio.create_task(sessions.until_ended(session))
    gone = asyncio.create_task(_until_client_leaves())
    try:
        done, _pending = await asyncio.wait({ended, gone}, return_when=asyncio.FIRST_COMPLETED)
        if ended in done:
            with contextlib.suppress(Exception):  # the client may be gone already
                message = {"event": "session_ended", "reason": ended.result()}
                await websocket.send(json.dumps(message))
                await websocket.close(1000)
    finally:
        for task in (ended, gone):
            task.cancel()
        await asyncio.gather(ended, gone, return_exceptions=True)


async def _until_client_leaves() -> None:
    while True:
        await websocket.receive()


def _user() -> User:
    return cast(User, current_user._get_current_object())


def _current_session_id() -> int | None:
    session = current_session()
    return session.id if session is not None else None
