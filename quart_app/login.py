"""Flask-Login's API on Quart-Auth, with sessions that live on the server.

Quart-Auth signs the cookie; the cookie carries only a random session key. The
`user_loader` turns that key into the user (the port's one difference from Flask-Login,
whose loader receives a user id), and the user carries its server-side session.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import quote

from quart import (
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

logger = logging.getLogger("quart_app.auth")
P = ParamSpec("P")
T = TypeVar("T")
ResponseReturn = Any

EXEMPT_METHODS = {"OPTIONS"}
# The key, in Quart's browser-session cookie, that marks a login made in this browser session.
FRESH_MARK = "_fresh"


class UserMixin:
    """What Flask-Login expects of a user; `session` is set by the user loader.

    A user found by the request loader (an API token) has no session.
    """

    id: Any
    is_active: bool
    session: ServerSession | None = None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class AnonymousUserMixin:
    """The user of a request that carries no valid session."""

    is_authenticated = False
    is_active = False
    is_anonymous = True
    username = ""

    def get_id(self) -> None:
        return None


class ServerSession(Protocol):
    """The stored half of a login, as the session store gives it back."""

    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    remember: bool
    fresh: bool
    fingerprint: str


class SessionStore(Protocol):
    """Where sessions live: created at login, ended at logout, read by the user loader."""

    async def start(
        self,
        user: Any,
        *,
        remember: bool,
        fresh: bool,
        fingerprint: str,
        ip: str,
        user_agent: str,
        expires_at: datetime,
    ) -> str: ...

    async def end(self, session: ServerSession, reason: str) -> None: ...

    async def touch(self, session: ServerSession, now: datetime) -> None: ...

    async def set_fresh(self, session: ServerSession, fresh: bool) -> None: ...


UserLoader = Callable[[str], Awaitable[UserMixin | None]]
RequestLoader = Callable[[], Awaitable[UserMixin | None]]


class LoginManager:
    """Flask-Login's LoginManager: user_loader, login_view, session_protection and friends."""

    def __init__(self, app: Quart | None = None, *, store: SessionStore | None = None) -> None:
        self.store = store
        self.login_view: str | None = None
        self.blueprint_login_views: dict[str, str | None] = {}
        self.login_message: str | None = "Please log in to access this page."
        self.login_message_category = "message"
        self.expired_message = "Your session has expired. Please log in again."
        self.refresh_view: str | None = None
        self.needs_refresh_message = "To protect your account, please enter your password again."
        self.needs_refresh_message_category = "message"
        self.session_protection: str | None = "strong"
        self.anonymous_user: Callable[[], AnonymousUserMixin] = AnonymousUserMixin
        self._user_callback: UserLoader | None = None
        self._request_callback: RequestLoader | None = None
        self._unauthorized_callback: Callable[[], Awaitable[ResponseReturn]] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        config = app.config
        # One Quart-Auth per app: it signs and writes the cookie that carries the session key.
        auth = QuartAuth(
            cookie_name=config["AUTH_COOKIE_NAME"],
            cookie_secure=config["SESSION_COOKIE_SECURE"],
            cookie_samesite="Lax",
            duration=config["REMEMBER_COOKIE_DURATION"],
            salt="quart_app session key",
            singleton=False,
        )
        auth.init_app(app)
        app.extensions["login_manager"] = self
        app.extensions["login_manager.auth"] = auth
        app.before_request(self._load_user)
        app.before_websocket(self._load_user)
        app.after_request(self._no_store)
        app.context_processor(_template_context)

    @property
    def auth(self) -> QuartAuth:
        return cast(QuartAuth, current_app.extensions["login_manager.auth"])

    def user_loader(self, callback: UserLoader) -> UserLoader:
        """Register the coroutine that turns a session key into its user, or None."""
        self._user_callback = callback
        return callback

    def request_loader(self, callback: RequestLoader) -> RequestLoader:
        """Register the coroutine that finds a user in the request itself (an API token)."""
        self._request_callback = callback
        return callback

    def unauthorized_handler(
        self, callback: Callable[[], Awaitable[ResponseReturn]]
    ) -> Callable[[], Awaitable[ResponseReturn]]:
        """Register the coroutine that answers an anonymous request to a protected view."""
        self._unauthorized_callback = callback
        return callback

    async def unauthorized(self) -> ResponseReturn:
        """Answer a request that needs a login, as Flask-Login does."""
        if self._unauthorized_callback is not None:
            return await self._unauthorized_callback()
        view = self.blueprint_login_views.get(request.blueprint or "", self.login_view)
        if view is None:
            abort(401)
        message = self.expired_message if g.get("_login_expired") else self.login_message
        if message:
            await flash(message, self.login_message_category)
        return redirect(login_url(view, next_url=_request_path()))

    async def needs_refresh(self) -> ResponseReturn:
        """Send a stale session to re-enter its password, as Flask-Login does."""
        if self.refresh_view is None:
            abort(401)
        await flash(self.needs_refresh_message, self.needs_refresh_message_category)
        return redirect(login_url(self.refresh_view, next_url=_request_path()))

    async def _load_user(self) -> None:
        """Resolve current_user once per request: the session cookie, else the request loader."""
        g._login_user = self.anonymous_user()
        user = await self._user_from_session()
        if user is None and self._request_callback is not None:
            user = await self._request_callback()
        if user is not None and user.is_active:
            g._login_user = user

    async def _user_from_session(self) -> UserMixin | None:
        """The cookie's user, once its session has passed the timeouts and protection."""
        key = self.auth.load_user().auth_id
        if key is None or self._user_callback is None:
            return None
        user = await self._user_callback(key)
        if user is None or user.session is None or not user.is_active:
            self._forget_cookie()
            return None
        session = user.session
        now = datetime.now(UTC)
        if self._expired(session, now):
            await self._end(session, "expired")
            g._login_expired = True
            return None
        protection = current_app.config.get("SESSION_PROTECTION", self.session_protection)
        if protection and session.fingerprint != client_fingerprint():
            if protection == "strong":
                await self._end(session, "protection")
                return None
            if session.fresh:
                await self.store_or_fail().set_fresh(session, False)
        elif session.remember and session.fresh and quart_session.get(FRESH_MARK) != _mark(key):
            # Flask-Login's rule: a session restored from the remember cookie (this browser
            # session did not log in) is not fresh.
            await self.store_or_fail().set_fresh(session, False)
        touch_interval = current_app.config["SESSION_TOUCH_INTERVAL"]
        if (now - session.last_seen_at).total_seconds() >= touch_interval:
            await self.store_or_fail().touch(session, now)
        return user

    def _expired(self, session: ServerSession, now: datetime) -> bool:
        if now >= session.expires_at:
            return True
        idle = timedelta(seconds=current_app.config["SESSION_IDLE_TIMEOUT"])
        return not session.remember and now - session.last_seen_at >= idle

    async def _end(self, session: ServerSession, reason: str) -> None:
        await self.store_or_fail().end(session, reason)
        self._forget_cookie()

    def _forget_cookie(self) -> None:
        if has_request_context():
            self.auth.logout_user()

    async def _no_store(self, response: Response) -> Response:
        # Pages for a logged-in user, and any answer that sets or clears the login, are private.
        if _get_user().is_authenticated or self.auth.load_user().action != Action.PASS:
            response.headers["Cache-Control"] = "no-store"
            response.vary.add("Cookie")
        return response

    def store_or_fail(self) -> SessionStore:
        if self.store is None:
            raise RuntimeError("LoginManager needs a session store")
        return self.store


async def _template_context() -> dict[str, Any]:
    # A coroutine: Quart would send a plain function to a thread on every render.
    return {"current_user": _get_user()}


def _manager() -> LoginManager:
    return cast(LoginManager, current_app.extensions["login_manager"])


def _get_user() -> UserMixin | AnonymousUserMixin:
    if (has_request_context() or has_websocket_context()) and "_login_user" in g:
        return cast(UserMixin | AnonymousUserMixin, g._login_user)
    if has_request_context() or has_websocket_context():
        return _manager().anonymous_user()
    return AnonymousUserMixin()


current_user: Any = LocalProxy(_get_user)


def _connection() -> Any:
    return request if has_request_context() else websocket


def client_address() -> str:
    """The client's address: the socket's, or the one a trusted proxy reported."""
    return str(_connection().remote_addr or "")


def client_fingerprint() -> str:
    """Flask-Login's session identifier: a hash of the client address and user agent."""
    user_agent = _connection().headers.get("User-Agent", "")
    return hashlib.sha512(f"{client_address()}|{user_agent}".encode()).hexdigest()


def _mark(key: str) -> str:
    """What the browser-session cookie holds to show that this browser session logged in."""
    return hashlib.sha256(f"fresh|{key}".encode()).hexdigest()[:32]


async def login_user(
    user: UserMixin, remember: bool = False, force: bool = False, fresh: bool = True
) -> bool:
    """Start a new server-side session for user; False when the account is inactive."""
    if not force and not user.is_active:
        return False
    manager = _manager()
    previous = _get_user()
    if isinstance(previous, UserMixin) and previous.session is not None:
        await manager.store_or_fail().end(previous.session, "logout")
    config = current_app.config
    lifetime = config["REMEMBER_COOKIE_DURATION"] if remember else config["SESSION_LIFETIME"]
    key = await manager.store_or_fail().start(
        user,
        remember=remember,
        fresh=fresh,
        fingerprint=client_fingerprint(),
        ip=client_address(),
        user_agent=request.headers.get("User-Agent", "")[:512],
        expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
    )
    action = Action.WRITE_PERMANENT if remember else Action.WRITE
    manager.auth.login_user(AuthUser(key, action))
    if fresh:
        quart_session[FRESH_MARK] = _mark(key)
    g._login_user = user
    return True


async def logout_user() -> bool:
    """End the current session on the server and clear its cookie."""
    manager = _manager()
    user = _get_user()
    if isinstance(user, UserMixin) and user.session is not None:
        await manager.store_or_fail().end(user.session, "logout")
        logger.info(json.dumps({"event": "logout", "user_id": user.id, "ip": client_address()}))
    manager.auth.logout_user()
    g._login_user = manager.anonymous_user()
    return True


async def confirm_login() -> None:
    """Make the current session fresh again, after the user re-entered the password."""
    user = _get_user()
    if isinstance(user, UserMixin) and user.session is not None:
        await _manager().store_or_fail().set_fresh(user.session, True)
        key = _manager().auth.load_user().auth_id
        if key is not None:
            quart_session[FRESH_MARK] = _mark(key)


def login_fresh() -> bool:
    """True when the session began with a password, not restored or marked stale."""
    user = _get_user()
    return isinstance(user, UserMixin) and user.session is not None and user.session.fresh


def login_required(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | Any]]:
    """Send anonymous visitors to the login view (or a 401) instead of running the view."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | Any:
        if request.method not in EXEMPT_METHODS and not current_user.is_authenticated:
            return await _manager().unauthorized()
        return await func(*args, **kwargs)

    return wrapper


def fresh_login_required(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | Any]]:
    """Like login_required, and a session restored from the remember cookie must log in again."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | Any:
        if request.method in EXEMPT_METHODS:
            return await func(*args, **kwargs)
        if not current_user.is_authenticated:
            return await _manager().unauthorized()
        if not login_fresh():
            return await _manager().needs_refresh()
        return await func(*args, **kwargs)

    return wrapper


def login_url(login_view: str, next_url: str | None = None) -> str:
    """The login view's URL, with `next` pointing back at the page that asked."""
    base = url_for(login_view)
    if next_url is None:
        return base
    return f"{base}?next={quote(next_url, safe='')}"


def _request_path() -> str:
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path


__all__ = [
    "AnonymousUserMixin",
    "LoginManager",
    "UserMixin",
    "confirm_login",
    "current_user",
    "fresh_login_required",
    "login_fresh",
    "login_required",
    "login_url",
    "login_user",
    "logout_user",
]
