"""Flask-Login's API on Quart-Auth, over sessions that live on the server.

As in Flask-Login, the `user_loader` receives the user id and returns the user (or None),
and `current_user` is what it returned. Beneath it, the cookie (signed by Quart-Auth)
carries only a random session key, which `sessions.resolve` checks first: ended, expired,
made under an older password, or failing `session_protection`, and the loader is not asked.
Callbacks may be coroutines or plain functions, as Quart's own hooks may.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from itsdangerous import BadSignature
from quart import (
    Blueprint,
    Quart,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    request,
    url_for,
    websocket,
)
from quart import session as quart_session
from quart.ctx import has_request_context, has_websocket_context
from quart_auth import Action, AuthUser, QuartAuth
from werkzeug.local import LocalProxy

from . import devices, sessions, signed
from .mixins import AnonymousUserMixin, UserMixin

logger = logging.getLogger("quart_app.auth")
P = ParamSpec("P")
T = TypeVar("T")
ResponseReturn = Any
Callback = Callable[..., Any]

EXEMPT_METHODS = {"OPTIONS"}
# The key, in Quart's browser-session cookie, that marks a login made in this browser session.
FRESH_MARK = "_fresh"
# What a bare app needs for logins; quart_app's config.DEFAULTS carries the same keys.
LOGIN_DEFAULTS: dict[str, Any] = {
    "AUTH_COOKIE_NAME": "quart_app_auth",
    "SESSION_COOKIE_SECURE": False,
    # Flask-Login's names and meanings (seconds, or a timedelta as Flask configs write it).
    "REMEMBER_COOKIE_DURATION": 30 * 24 * 3600,
    "SESSION_LIFETIME": 12 * 3600,
    "SESSION_IDLE_TIMEOUT": 2 * 3600,
    # last_seen is written at most this often, so most requests cost one read.
    "SESSION_TOUCH_INTERVAL": 60,
    # Sessions each worker keeps in memory (sessions/cache.py); 0 reads every request's.
    # None: 4096 on SQLite, and on PostgreSQL with LISTEN (copies served only while it has
    # nothing unread, so that an outage is a 503 at once); 0 with Redis and a database server.
    "SESSION_CACHE_SIZE": None,
    # Live sessions per user; a new login past it ends the least recently used one.
    "SESSION_MAX_PER_USER": 100,
    # How often each worker deletes the rows of expired sessions (seconds; 0: never).
    "SESSION_PURGE_INTERVAL": 3600,
    "DATABASE_URL": "sqlite://:memory:",
    "REDIS_URL": None,
}


class _SessionKeyAuth(QuartAuth):
    """Quart-Auth, with a remembered cookie lasting what its login_user(duration=) asked,
    and each cookie's signature verified once per worker (signed.py)."""

    verified = signed.Verified()

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        app = app or current_app
        keys = signed.signing_keys(app)
        try:
            value = self.verified.loads(
                lambda: self.serializer_class(keys, cast(str, self.salt)),
                self.salt,
                keys,
                token,
                self.duration,
            )
        except BadSignature:  # and SignatureExpired, as Quart-Auth's own
            return None
        return cast(str, value)

    @property
    def duration(self) -> int | None:
        override = g.get("_login_cookie_duration") if has_request_context() else None
        return cast(int | None, self._duration if override is None else override)

    @duration.setter
    def duration(self, value: int | None) -> None:
        self._duration = value


class LoginManager:
    """Flask-Login's LoginManager: user_loader, login_view, session_protection and friends."""

    def __init__(self, app: Quart | None = None, add_context_processor: bool = True) -> None:
        self.login_view: str | None = None
        self.blueprint_login_views: dict[str | None, str | None] = {}
        self.login_message: str | None = "Please log in to access this page."
        self.login_message_category = "message"
        self.expired_message: str | None = "Your session has expired. Please log in again."
        self.refresh_view: str | None = None
        self.needs_refresh_message: str | None = (
            "To protect your account, please reauthenticate to access this page."
        )
        self.needs_refresh_message_category = "message"
        self.session_protection: str | None = "basic"
        # Flask-Login's: turns login_message and needs_refresh_message into the user's language.
        self.localize_callback: Callable[[str], str] | None = None
        self.anonymous_user: Callable[[], Any] = AnonymousUserMixin
        self.id_attribute = "get_id"
        self._user_callback: Callback | None = None
        self._request_callback: Callback | None = None
        self.unauthorized_callback: Callback | None = None
        self.needs_refresh_callback: Callback | None = None
        self._add_context_processor = add_context_processor
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart, add_context_processor: bool = True) -> None:
        for key, value in LOGIN_DEFAULTS.items():
            app.config.setdefault(key, value)
        config = app.config
        # One Quart-Auth per app: it signs and writes the cookie that carries the session key.
        auth = _SessionKeyAuth(
            cookie_name=config["AUTH_COOKIE_NAME"],
            cookie_secure=config["SESSION_COOKIE_SECURE"],
            cookie_samesite="Lax",
            duration=int(sessions.seconds(config["REMEMBER_COOKIE_DURATION"])),
            salt="quart_app session key",
            singleton=False,
        )
        auth.init_app(app)
        if "session_events" not in app.extensions:
            sessions.init_app(app)
        app.extensions["login_manager"] = self
        app.extensions["login_manager.auth"] = auth
        app.login_manager = self  # type: ignore[attr-defined]  # as Flask-Login sets it
        app.before_request(self._load_user)
        app.before_websocket(self._load_user)
        app.after_request(self._no_store)
        if add_context_processor and self._add_context_processor:
            app.context_processor(_template_context)

    @property
    def auth(self) -> QuartAuth:
        return cast(QuartAuth, current_app.extensions["login_manager.auth"])

    @property
    def user_callback(self) -> Callback | None:
        """The callback registered by user_loader, as Flask-Login names it."""
        return self._user_callback

    @property
    def request_callback(self) -> Callback | None:
        """The callback registered by request_loader, as Flask-Login names it."""
        return self._request_callback

    def user_loader(self, callback: Callback) -> Callback:
        """Register the callback that turns a user id (a str) into the user, or None."""
        self._user_callback = callback
        return callback

    def request_loader(self, callback: Callback) -> Callback:
        """Register the callback that finds a user in the request itself (an API token)."""
        self._request_callback = callback
        return callback

    def unauthorized_handler(self, callback: Callback) -> Callback:
        """Register the callback that answers an anonymous request to a protected view."""
        self.unauthorized_callback = callback
        return callback

    def needs_refresh_handler(self, callback: Callback) -> Callback:
        """Register the callback that answers a stale session at a fresh-only view."""
        self.needs_refresh_callback = callback
        return callback

    async def unauthorized(self) -> ResponseReturn:
        """Answer a request that needs a login, as Flask-Login does."""
        if self.unauthorized_callback is not None:
            return await _call(self.unauthorized_callback)
        if request.blueprint in self.blueprint_login_views:
            view = self.blueprint_login_views[request.blueprint]
        else:
            view = self.login_view
        if not view:
            abort(401)
        message = self.expired_message if g.get("_login_expired") else self.login_message
        text = self._text(message)
        if text:
            await flash(text, self.login_message_category)
        return redirect(_redirect_with_next(view))

    async def needs_refresh(self) -> ResponseReturn:
        """Send a stale session to re-enter its password, as Flask-Login does."""
        if self.needs_refresh_callback is not None:
            return await _call(self.needs_refresh_callback)
        if not self.refresh_view:
            abort(401)
        text = self._text(self.needs_refresh_message)
        if text:
            await flash(text, self.needs_refresh_message_category)
        return redirect(_redirect_with_next(self.refresh_view))

    def _text(self, message: str | None) -> str:
        """The message to flash, localized; translated once (a lazy text would translate
        again each time it is tested, measured, or written into the session cookie)."""
        if message is None:
            return ""
        text = str(message)
        if not text or self.localize_callback is None:
            return text
        return self.localize_callback(message)

    async def _load_user(self) -> None:
        """Resolve current_user once per request: the session cookie, else the request loader."""
        g._login_user = self.anonymous_user()
        g._login_session = None
        if has_request_context() and request.endpoint == "static":
            return  # as in Flask-Login, where nothing asks a static file for its user
        user = await self._user_from_session()
        if user is None and self._request_callback is not None:
            # The request itself, as Flask-Login passes it, not this module's proxy.
            user = await _call(self._request_callback, _connection()._get_current_object())
        if user is not None:
            g._login_user = user

    async def _user_from_session(self) -> Any:
        """The loader's user for the cookie's session, once the session has passed its checks."""
        key = self.auth.load_user().auth_id
        if key is None or self._user_callback is None:
            return None
        resolved = await sessions.resolve(
            key,
            current_client(),
            protection=current_app.config.get("SESSION_PROTECTION", self.session_protection),
            logged_in_here=lambda: quart_session.get(FRESH_MARK) == fresh_mark(key),
        )
        if resolved.session is None:
            g._login_expired = resolved.ended == "expired"
            self._forget_cookie()
            return None
        g._login_loaded = resolved.user
        user = await _call(self._user_callback, str(resolved.session.user_id))
        if user is None:
            self._forget_cookie()
            return None
        g._login_session = resolved.session
        return user

    def _forget_cookie(self) -> None:
        if has_request_context():
            self.auth.logout_user()

    async def _no_store(self, response: Response) -> Response:
        # Pages for a logged-in user, and any answer that sets or clears the login, are private.
        if _get_user().is_authenticated or self.auth.load_user().action != Action.PASS:
            response.headers["Cache-Control"] = "no-store"
            response.vary.add("Cookie")
        return response


def _redirect_with_next(view: str) -> str:
    """The view's URL with the asking page in next: in the query, or in the session."""
    if not current_app.config.get("USE_SESSION_FOR_NEXT"):
        return login_url(view, next_url=request.url)
    quart_session["next"] = make_next_param(expand_login_view(view), request.url)
    return login_url(view)


async def _call(callback: Callback, *args: Any, **kwargs: Any) -> Any:
    """Run a Flask-style callback, a coroutine function or a plain one (in a thread)."""
    return await current_app.ensure_async(callback)(*args, **kwargs)


async def _template_context() -> dict[str, Any]:
    # A coroutine: Quart would send a plain function to a thread on every render.
    return {"current_user": _get_user(), "login_session": current_session()}


def _manager() -> LoginManager:
    return cast(LoginManager, current_app.extensions["login_manager"])


def _get_user() -> Any:
    if has_request_context() or has_websocket_context():
        if "_login_user" in g:
            return g._login_user
        return _manager().anonymous_user()
    return AnonymousUserMixin()


current_user: Any = LocalProxy(_get_user)


def current_session() -> Any:
    """The server-side session of this request's login (an AuthSession), or None."""
    if (has_request_context() or has_websocket_context()) and _get_user().is_authenticated:
        return g.get("_login_session")
    return None


def user_read_with_session(user_id: str) -> Any:
    """The user read together with this request's session, if it is user_id; else None.

    The shipped user_loader answers from it, so a logged-in request costs one query.
    """
    user = g.get("_login_loaded") if has_request_context() or has_websocket_context() else None
    return user if user is not None and str(user.id) == user_id else None


def _connection() -> Any:
    return request if has_request_context() else websocket


def client_address() -> str:
    """The client's address: the socket's, or the one a trusted proxy reported."""
    return str(_connection().remote_addr or "")


def current_client() -> sessions.Client:
    return sessions.Client(client_address(), _connection().headers.get("User-Agent", ""))


def fresh_mark(key: str) -> str:
    """What the browser-session cookie holds to show that this browser session logged in."""
    return hashlib.sha256(f"fresh|{key}".encode()).hexdigest()[:32]


async def login_user(
    user: Any,
    remember: bool = False,
    duration: timedelta | None = None,
    force: bool = False,
    fresh: bool = True,
) -> bool:
    """Start a new server-side session for user; False when the account is inactive."""
    if duration is not None and not isinstance(duration, timedelta):
        raise TypeError(f"duration must be a datetime.timedelta, instead got: {duration!r}")
    configured = current_app.config["REMEMBER_COOKIE_DURATION"]
    if remember and not isinstance(configured, int | float | timedelta):
        raise TypeError(f"REMEMBER_COOKIE_DURATION must be seconds or a timedelta: {configured!r}")
    if not force and not user.is_active:
        return False
    manager = _manager()
    previous = current_session()
    if previous is not None:
        await sessions.end(previous, "logout")
    client = current_client()
    key, session = await sessions.start(
        user,
        remember=remember,
        fresh=fresh,
        client=client,
        device=devices.describe(client.user_agent),
        lifetime=duration,
    )
    action = Action.WRITE_PERMANENT if remember else Action.WRITE
    if remember and duration is not None:
        g._login_cookie_duration = int(duration.total_seconds())
    manager.auth.login_user(AuthUser(key, action))
    if fresh:
        quart_session[FRESH_MARK] = fresh_mark(key)
    g._login_user = user
    g._login_session = session
    return True


async def logout_user() -> bool:
    """End the current session on the server and clear its cookie."""
    manager = _manager()
    user = _get_user()
    session = current_session()
    if session is not None:
        await sessions.end(session, "logout")
        logger.info(json.dumps({"event": "logout", "user_id": user.id, "ip": client_address()}))
    manager.auth.logout_user()
    quart_session.pop(FRESH_MARK, None)
    g._login_user = manager.anonymous_user()
    g._login_session = None
    return True


async def confirm_login() -> None:
    """Make the current session fresh again, after the user re-entered the password."""
    session = current_session()
    if session is not None:
        await sessions.set_fresh(session, True)
        key = _manager().auth.load_user().auth_id
        if key is not None:
            quart_session[FRESH_MARK] = fresh_mark(key)


def login_fresh() -> bool:
    """True when the session began with a password, not restored or marked stale."""
    session = current_session()
    return session is not None and bool(session.fresh)


def login_remembered() -> bool:
    """True when the current login is remembered across browser sessions."""
    session = current_session()
    return session is not None and bool(session.remember)


def set_login_view(login_view: str, blueprint: Blueprint | None = None) -> None:
    """Set the login view of the app, or of one blueprint, as Flask-Login's does."""
    manager = _manager()
    if blueprint is None and not manager.blueprint_login_views:
        manager.login_view = login_view
        return
    # Once one blueprint has its own, the app's view moves to the None key beside it.
    if manager.login_view is not None and None not in manager.blueprint_login_views:
        manager.blueprint_login_views[None] = manager.login_view
    manager.login_view = None
    manager.blueprint_login_views[blueprint.name if blueprint else None] = login_view


def login_required(func: Callable[P, Any]) -> Callable[P, Any]:
    """Send anonymous visitors to the login view (or a 401) instead of running the view."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if request.method in EXEMPT_METHODS or current_app.config.get("LOGIN_DISABLED"):
            return await _call(func, *args, **kwargs)
        if not current_user.is_authenticated:
            return await _manager().unauthorized()
        return await _call(func, *args, **kwargs)

    return wrapper


def fresh_login_required(func: Callable[P, Any]) -> Callable[P, Any]:
    """Like login_required, and a session restored from the remember cookie must log in again."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if request.method in EXEMPT_METHODS or current_app.config.get("LOGIN_DISABLED"):
            return await _call(func, *args, **kwargs)
        if not current_user.is_authenticated:
            return await _manager().unauthorized()
        if not login_fresh():
            return await _manager().needs_refresh()
        return await _call(func, *args, **kwargs)

    return wrapper


def expand_login_view(login_view: str) -> str:
    """A login view's URL: given as a URL, or as an endpoint name for url_for."""
    if login_view.startswith(("https://", "http://", "/")):
        return login_view
    return url_for(login_view)


def make_next_param(login_url: str, current_url: str) -> str:
    """current_url reduced to its path and query when it is on the login URL's site."""
    login, current = urlsplit(login_url), urlsplit(current_url)
    if (not login.scheme or login.scheme == current.scheme) and (
        not login.netloc or login.netloc == current.netloc
    ):
        return urlunsplit(("", "", current.path, current.query, ""))
    return current_url


def login_url(login_view: str, next_url: str | None = None, next_field: str = "next") -> str:
    """The login view's URL, with next_field pointing back at the page that asked."""
    base = expand_login_view(login_view)
    if next_url is None:
        return base
    parts = urlsplit(base)
    query = parse_qs(parts.query, keep_blank_values=True)
    query[next_field] = [make_next_param(base, next_url)]
    netloc = current_app.config.get("FORCE_HOST_FOR_REDIRECTS") or parts.netloc
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, doseq=True)))


__all__ = [
    "AnonymousUserMixin",
    "LoginManager",
    "UserMixin",
    "confirm_login",
    "current_session",
    "current_user",
    "fresh_login_required",
    "login_fresh",
    "login_remembered",
    "login_required",
    "login_url",
    "login_user",
    "logout_user",
    "set_login_view",
    "user_read_with_session",
]
