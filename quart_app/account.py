"""The account pages: where you are logged in, ending sessions, the password; the live socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import cast

from quart import (
    Blueprint,
    ResponseReturnValue,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
    websocket,
)
from quart_babel import gettext as _
from ua_parser import parse as parse_user_agent

from . import accounts, sessions
from .events import session_events
from .forms import ConfirmForm, EndSessionForm, PasswordForm
from .login import (
    client_address,
    confirm_login,
    current_user,
    fresh_login_required,
    login_required,
)
from .models import AuthSession, User
from .throttle import Throttled
from .views import safe_next

bp = Blueprint("account", __name__)


def describe_device(user_agent: str) -> str:
    """'Firefox 128 on Windows', from the user agent the session logged in with."""
    result = parse_user_agent(user_agent)
    browser = result.user_agent.family if result.user_agent else str(_("Unknown browser"))
    if result.user_agent and result.user_agent.major:
        browser += f" {result.user_agent.major}"
    system = result.os.family if result.os else None
    device = result.device.family if result.device and result.device.family != "Other" else None
    where = " on ".join(part for part in (device or system,) if part)
    return str(_("%(browser)s on %(system)s", browser=browser, system=where)) if where else browser


@bp.get("/account/")
@login_required
async def index() -> ResponseReturnValue:
    user = _user()
    rows = await sessions.for_user(user)
    current = user.session
    return await render_template(
        "account.html",
        sessions=[(row, describe_device(row.user_agent)) for row in rows],
        current_id=current.id if isinstance(current, AuthSession) else None,
        form=await EndSessionForm.from_request(),
    )


@bp.post("/account/sessions/<int(max=2147483647):session_id>/end")
@fresh_login_required
async def end_session(session_id: int) -> ResponseReturnValue:
    form = await EndSessionForm.from_request()
    if not form.validate():
        abort(400)
    user = _user()
    if await sessions.end_one(user, session_id, "ended_elsewhere"):
        await flash(_("The session has been ended."))
    return redirect(url_for("account.index"), 303)


@bp.post("/account/sessions/end-others")
@fresh_login_required
async def end_other_sessions() -> ResponseReturnValue:
    form = await EndSessionForm.from_request()
    if not form.validate():
        abort(400)
    user = _user()
    ended = await sessions.end_all(user, "ended_elsewhere", keep=_current_session_id())
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
        return await render_template("confirm.html", form=form, next=request.args.get("next"))
    status = 400
    if form.validate():
        try:
            await accounts.authenticate(
                _user().username, form.password.data, client=client_address()
            )
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
    body = await render_template("confirm.html", form=form, next=request.args.get("next"))
    return body, status


@bp.websocket("/ws/session")
async def session_socket() -> None:
    """Tell the page when its session ends, so it can go to the login page by itself."""
    user = current_user._get_current_object()
    if not isinstance(user, User) or not isinstance(user.session, AuthSession):
        abort(401)  # refused before the handshake completes
    session = user.session
    events = session_events()
    queue = events.subscribe(session.id)
    try:
        await websocket.accept()
        reason = await _until_ended(session, queue)
        if reason is not None:
            with contextlib.suppress(Exception):  # the client may be gone already
                await websocket.send(json.dumps({"event": "session_ended", "reason": reason}))
                await websocket.close(1000)
    finally:
        events.unsubscribe(session.id, queue)


async def _until_ended(session: AuthSession, queue: asyncio.Queue[str]) -> str | None:
    """Wait for the end of the session (its reason), or for the client to go away (None)."""
    receiver = asyncio.create_task(_drain_client())
    try:
        while True:
            deadline = _deadline(session)
            waiter = asyncio.create_task(queue.get())
            delay = max(0.0, (deadline - datetime.now(UTC)).total_seconds())
            done, _ = await asyncio.wait(
                {waiter, receiver}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter in done:
                return waiter.result()
            waiter.cancel()
            if receiver in done:
                return None
            # The deadline passed: other requests may have kept the session alive meanwhile.
            fresh = await AuthSession.get_or_none(id=session.id)
            if fresh is None:
                return "ended_elsewhere"
            session = fresh
            if datetime.now(UTC) >= _deadline(session):
                await sessions.DatabaseSessionStore().end(session, "expired")
                return "expired"
    finally:
        receiver.cancel()


async def _drain_client() -> None:
    while True:
        await websocket.receive()


def _deadline(session: AuthSession) -> datetime:
    deadline = session.expires_at
    if not session.remember:
        idle = timedelta(seconds=current_app.config["SESSION_IDLE_TIMEOUT"])
        deadline = min(deadline, session.last_seen_at + idle)
    return deadline


def _user() -> User:
    return cast(User, current_user._get_current_object())


def _current_session_id() -> int | None:
    session = _user().session
    return session.id if isinstance(session, AuthSession) else None
