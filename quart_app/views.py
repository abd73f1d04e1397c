"""The tutorial's HTML pages: register, log in, the index that greets the user, log out."""

from __future__ import annotations

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
)
from quart_babel import gettext as _

from . import accounts, recovery, two_factor
from .forms import CSRF_FAILED, LoginForm, LogoutForm, RegisterForm, logout_csrf_token
from .i18n import COOKIE as LANGUAGE_COOKIE
from .i18n import LANGUAGES, _l
from .login import client_address, current_user, login_required, login_user, logout_user
from .redirects import safe_next
from .throttle import Throttled

bp = Blueprint("views", __name__)
bp.add_app_template_global(logout_csrf_token)
bp.add_app_template_global(safe_next)

# Why the live-logout script sent a page here (see static/session.js).
END_REASONS = {
    "expired": _l("Your session expired. Please log in again."),
    "logout": _l("You logged out in another tab."),
    "ended_elsewhere": _l("Your session was ended from another device."),
    "password_changed": _l("Your password was changed. Please log in with the new one."),
    "protection": _l("Your session ended because your connection changed."),
    "disabled": _l("Your account has been disabled."),
    "password_reset": _l("Your password was reset. Please log in with the new one."),
    "session_limit": _l("You logged in on too many devices; this, the oldest session, ended."),
}


@bp.get("/")
async def root() -> ResponseReturnValue:
    return redirect(url_for("views.index"))


@bp.get("/language/<code>")
async def set_language(code: str) -> ResponseReturnValue:
    """Remember the visitor's language in a cookie and go back to the page."""
    if code not in LANGUAGES:
        abort(404)
    response = redirect(safe_next(request.args.get("next")), 303)
    response.set_cookie(
        LANGUAGE_COOKIE,
        code,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


@bp.get("/index/")
@login_required
async def index() -> ResponseReturnValue:
    return await render_template("index.html")


@bp.route("/register/", methods=["GET", "POST"])
async def register() -> ResponseReturnValue:
    form = await RegisterForm.from_request()
    if request.method != "POST":  # GET, and HEAD like it
        return await render_template("register.html", form=form)
    if not form.validate():
        return await _form_error("register.html", form, 400)
    try:
        user = await accounts.register(
            form.username.data, form.password.data, client=client_address(), email=form.email.data
        )
    except Throttled as error:
        form.form_errors.append(error.description)
        return await _form_error("register.html", form, 429, retry_after=error.seconds)
    except (accounts.InvalidField, accounts.UsernameTaken, recovery.EmailTaken) as error:
        form[error.field].errors = [*form[error.field].errors, error.description]
        return await _form_error("register.html", form, 400)
    await login_user(user)
    await flash(_("Welcome, %(name)s! Your account has been created.", name=user.username))
    return redirect(url_for("views.index"), 303)


@bp.route("/login/", methods=["GET", "POST"])
async def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("views.index"))
    form = await LoginForm.from_request()
    if request.method != "POST":  # GET, and HEAD like it
        return await render_template(
            "login.html",
            form=form,
            next=request.args.get("next"),
            reason_message=END_REASONS.get(request.args.get("reason", "")),
        )
    if not form.validate():
        return await _form_error("login.html", form, 400)
    try:
        user = await accounts.authenticate(
            form.username.data, form.password.data, client=client_address()
        )
    except Throttled as error:
        form.form_errors.append(error.description)
        return await _form_error("login.html", form, 429, retry_after=error.seconds)
    except accounts.InvalidCredentials as error:
        form.form_errors.append(error.description)
        return await _form_error("login.html", form, 401)
    target = safe_next(request.args.get("next"))
    if await two_factor.require_second_step(user, remember=form.remember.data, next_url=target):
        return redirect(url_for("security.second_step"), 303)
    await login_user(user, remember=form.remember.data)
    return redirect(target, 303)


@bp.route("/logout/", methods=["GET", "POST"])
async def logout() -> ResponseReturnValue:
    form = await LogoutForm.from_request()
    if request.method == "POST" and not form.validate():
        return await _form_error("logout.html", form, 400)
    if not current_user.is_authenticated:
        return redirect(url_for("views.login"), 303)
    if request.method != "POST":  # GET, and HEAD like it
        return await render_template("logout.html", form=form)
    await logout_user()
    await flash(_("You have been logged out."))
    return redirect(url_for("views.login"), 303)


async def _form_error(
    template: str, form: LoginForm | RegisterForm | LogoutForm, status: int, retry_after: int = 0
) -> ResponseReturnValue:
    if form.csrf_failed:
        form.form_errors.append(CSRF_FAILED)
    form.clear_passwords()
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    body = await render_template(template, form=form, next=request.args.get("next"))
    return body, status, headers
