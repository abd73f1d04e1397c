"""Flask-Login's own tests (maxcountryman/flask-login, tests/test_login.py, 0.7.0), ported.

Each test keeps its upstream name and meaning, on a bare `Quart(__name__)` app built in the
test (a SECRET_KEY, an in-memory database opened by `quart_app.db.init_app`, nothing else of
quart_app's configuration) with the upstream users and plain-function loaders, as a Flask
developer moving an app over writes them. Server-side sessions keep a foreign key to the
users table, so Notch, Steve and the inactive Creeper are `quart_app.models.User` rows
(ids 1, 2, 3), created at each app's startup. The adaptations are the ones async and
server-side sessions force: `await login_user(...)`, `await` on the manager's answers,
and "the browser closed" is the client dropping its browser-session cookies rather than
clearing Flask's session.
The tests at the end run the same semantics on quart_app's own site.

A permanent session is a remembered one (`remember=True`): the remembered cookie is the one
that outlives the browser, and there is no Flask `session.permanent`. So
test_permanent_strong_session_protection_marks_session_unfresh logs in with remember=True
(strong protection only marks it stale), and test_session_protection_strong_deletes_session,
which upstream logs in remembered but not permanent, logs in without remember.

Left out, by upstream name:

- test_remember_me_username, test_remember_me_user_id (UnicodeCookieUserIDTestCase): the
  user id "佐藤" is not an integer, and a session's user is a row with an integer key.
- test_user_mixin_subclass_without_is_active_logs_in: logs in a `UserMixin` object that is
  not a row; the mixin's default (`is_active` True) is test_default_values.
- test_requests_without_accessing_session: that the loader runs only when a view reads
  `current_user`. `current_user` is a plain (synchronous) proxy and the session is a database
  read, so the user is resolved before each request that carries a session cookie.

- test_static_loads_anonymous: reads `current_user` after the request, from the context
  Flask's test client keeps; Quart's does not keep it. Its meaning (a static file does not
  load the user) is test_static_loads_without_accessing_session, measured by loader calls.
- test_no_user_loader_raises: calls the private `_load_user` with `session["_user_id"]`.
- test_login_user_emits_signal, test_logout_emits_signal, test_logout_without_current_user,
  test_unauthorized_fires_unauthorized_signal, test_user_loaded_from_cookie_fired,
  test_user_loaded_from_request_fired, test_needs_refresh_fires_needs_refresh_signal,
  test_user_login_confirmed_signal_fired, test_session_protection_basic_fires_signal,
  test_permanent_strong_session_protection_fires_signal,
  test_session_protection_strong_fires_signal_user_agent: Flask-Login's blinker signals
  (the last one also deletes `_user_id` from the session). Where a signal test also asserts
  a user or a state, that part is ported under the test that asserts it.
- test_remember_me_custom_duration_uses_custom_cookie, the cookie half of
  test_remember_me_uses_custom_cookie_parameters and test_remember_me_accepts_duration_as_int:
  REMEMBER_COOKIE_NAME, _PATH and _DOMAIN name Flask-Login's separate remember cookie; here
  one signed cookie names the server-side session. The durations are ported.
- test_set_cookie_with_invalid_duration_raises_exception: calls the private `_set_cookie`.
- test_remember_me_refresh_each_request: patches `flask_login.login_manager.datetime`.
- test_invalid_remember_cookie: writes `sess["_user_id"] = None`; ported as
  test_invalid_login_cookie (every cookie the client holds replaced with garbage).
- test_login_via_request_uses_cookie_when_already_logged_in: its request loader reads
  Flask-Login's `_user_id` session key.
- test_cookie_encoding, test_cookie_encoding_with_key: Flask-Login's cookie format
  (`encode_cookie`, `decode_cookie`).
- test_bytes, test_native, test_default (SecretKeyTestCase): the private `_secret_key`.
- test_user_context_processor: calls the private `_user_context_processor`; ported as a
  template rendering `current_user`.
- test_no_args_to_test_client, test_user_arg_to_test_client,
  test_fresh_login_arg_to_test_client, test_session_protection_modes: `FlaskLoginClient`,
  which logs in by writing Flask-Login's session keys into the test client's session.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast

import pytest
from quart import (
    Blueprint,
    Quart,
    Request,
    Response,
    get_flashed_messages,
    render_template_string,
    request,
    session,
)
from quart.typing import TestClientProtocol as Client
from quart.views import MethodView

import quart_app
from quart_app.login import AnonymousUserMixin, LoginManager, UserMixin
from quart_app.models import User as SiteUser

from .conftest import AppFactory, AuthActions

# Flask-Login's API as a Flask developer calls it (plain-function callbacks, `duration=`,
# `next_field`, ...). Typed Any, so that what these tests may call is Flask-Login's
# signatures, not the ones quart_app.login declares today.
fl: Any = importlib.import_module("quart_app.login")


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    return cast(Callable[..., Any], fl.login_required(view))


def fresh_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    return cast(Callable[..., Any], fl.fresh_login_required(view))


# The upstream users, as rows: server-side sessions keep a foreign key to the users table.
NOTCH, STEVE, CREEPER = 1, 2, 3
CAST = {NOTCH: ("Notch", True), STEVE: ("Steve", True), CREEPER: ("Creeper", False)}
# Filled by each bare app's startup with its own rows, by id, for the plain-function loaders.
USERS: dict[int, SiteUser] = {}


async def create_users() -> None:
    """Notch, Steve and the inactive Creeper, as rows of a fresh database (ids 1, 2, 3)."""
    USERS.clear()
    for user_id, (name, active) in CAST.items():
        user = await SiteUser.create(
            username=name, username_key=name.lower(), password_hash="x", is_active=active
        )
        assert user.id == user_id
        USERS[user.id] = user


# --- the harness ---------------------------------------------------------------------------


def bare_app(**config: Any) -> Quart:
    """A Flask developer's app: a secret key, its database, the users, and what the test adds."""
    app = Quart(__name__)
    app.config["SECRET_KEY"] = "deterministic"
    app.config["DATABASE_URL"] = "sqlite://:memory:"
    # Exceptions reach the test, which then names them, instead of a bare 500.
    app.config["TESTING"] = True
    # What quart_app.db reads besides the URL.
    app.config["DATABASE_POOL_SIZE"] = 1
    app.config.update(config)
    # The database the sessions live in, opened at startup; then the upstream users.
    quart_app.db.init_app(app)
    app.before_serving(create_users)
    return app


@asynccontextmanager
async def serving(app: Quart) -> AsyncIterator[Client]:
    """Run the app's startup and shutdown around a test client."""
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def text(client: Client, path: str, **kwargs: Any) -> str:
    response = await client.get(path, **kwargs)
    return await response.get_data(as_text=True)


def close_browser(client: Client) -> None:
    """What closing the browser does: it forgets the cookies that have no expiry."""
    assert client.cookie_jar is not None
    client.cookie_jar.clear_session_cookies()


def persistent_cookies(client: Client) -> dict[str, int]:
    """The client's cookies that outlive the browser session, by name: their expiry."""
    assert client.cookie_jar is not None
    return {c.name: c.expires for c in client.cookie_jar if c.expires is not None}


def assert_expires_in(client: Client, duration: timedelta) -> None:
    """Some persistent cookie the login set expires `duration` from now (within a minute)."""
    expected = (datetime.now(UTC) + duration).timestamp()
    expiries = persistent_cookies(client).values()
    assert any(abs(expires - expected) < 60 for expires in expiries), (
        f"no cookie expires in {duration}: {sorted(expiries)} vs {expected:.0f}"
    )


def add_flashes_route(app: Quart) -> None:
    @app.route("/flashes/<category>")
    async def flashes(category: str) -> str:
        return json.dumps(get_flashed_messages(category_filter=[category]))


def login_case(**config: Any) -> tuple[Quart, Any]:
    """LoginTestCase.setUp: the app, its LoginManager, and the upstream routes and loaders."""
    config.setdefault("SESSION_PROTECTION", None)
    app = bare_app(**config)
    login_manager = fl.LoginManager()
    login_manager.init_app(app)

    @app.route("/")
    async def index() -> str:
        return "Welcome!"

    @app.route("/secret")
    async def secret() -> Any:
        return await login_manager.unauthorized()

    @app.route("/login-notch")
    async def login_notch() -> str:
        return str(await fl.login_user(USERS[NOTCH]))

    @app.route("/login-notch-remember")
    async def login_notch_remember() -> str:
        return str(await fl.login_user(USERS[NOTCH], remember=True))

    @app.route("/login-notch-remember-custom")
    async def login_notch_remember_custom() -> str:
        duration = timedelta(hours=7)
        return str(await fl.login_user(USERS[NOTCH], remember=True, duration=duration))

    @app.route("/needs-refresh")
    async def needs_refresh() -> Any:
        return await login_manager.needs_refresh()

    @app.route("/confirm-login")
    async def _confirm_login() -> str:
        await fl.confirm_login()
        return ""

    @app.route("/username")
    async def username() -> str:
        if fl.current_user.is_authenticated:
            return str(fl.current_user.username)
        return "Anonymous"

    @app.route("/is-fresh")
    async def is_fresh() -> str:
        return str(fl.login_fresh())

    @app.route("/is-remembered")
    async def is_remembered() -> str:
        return str(fl.login_remembered())

    @app.route("/logout")
    async def logout() -> str:
        return str(await fl.logout_user())

    def load_user(user_id: str) -> SiteUser:
        return USERS[int(user_id)]

    def load_user_from_request(request: Request) -> SiteUser | None:
        user_id: Any = request.args.get("user_id")
        with suppress(TypeError):
            user_id = int(float(user_id))
        return USERS.get(user_id)

    login_manager.user_loader(load_user)
    login_manager.request_loader(load_user_from_request)

    @app.route("/empty_session")
    async def empty_session() -> str:
        return f"modified={session.modified}"

    add_flashes_route(app)
    return app, login_manager


# --- StaticTestCase -------------------------------------------------------------------------


async def test_static_loads_without_accessing_session() -> None:
    app = bare_app(SESSION_PROTECTION=None)
    app.static_url_path = "/static"
    lm = fl.LoginManager()
    lm.init_app(app)
    calls: list[str] = []

    def load_user(user_id: str) -> SiteUser:
        calls.append(user_id)
        return USERS[int(user_id)]

    lm.user_loader(load_user)

    @app.route("/login-notch")
    async def login_notch() -> str:
        return str(await fl.login_user(USERS[NOTCH]))

    async with serving(app) as c:
        await c.get("/login-notch")
        before = len(calls)
        await c.get("/static/favicon.ico")
        assert len(calls) == before


# --- InitializationTestCase -----------------------------------------------------------------


async def test_init_app() -> None:
    app = Quart(__name__)
    app.config["SECRET_KEY"] = "1234"
    login_manager = fl.LoginManager()
    login_manager.init_app(app, add_context_processor=True)
    assert isinstance(login_manager, fl.LoginManager)


async def test_class_init() -> None:
    app = Quart(__name__)
    app.config["SECRET_KEY"] = "1234"
    login_manager = fl.LoginManager(app, add_context_processor=True)
    assert isinstance(login_manager, fl.LoginManager)


# --- MethodViewLoginTestCase ----------------------------------------------------------------


async def test_options_call_exempt() -> None:
    app = bare_app()
    fl.LoginManager().init_app(app)

    class SecretEndpoint(MethodView):
        decorators: ClassVar[list[Callable[..., Any]]] = [login_required, fresh_login_required]

        async def options(self) -> str:
            return ""

        async def get(self) -> str:
            return ""

    app.add_url_rule("/secret", view_func=SecretEndpoint.as_view("secret"))
    async with serving(app) as c:
        result = await c.options("/secret")
        assert result.status_code == 200


# --- LoginTestCase: login -------------------------------------------------------------------


async def test_test_request_context_users_are_anonymous() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        assert fl.current_user.is_anonymous


async def test_defaults_anonymous() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        assert await text(c, "/username") == "Anonymous"


async def test_login_user() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        result = await fl.login_user(USERS[NOTCH])
        assert result
        assert fl.current_user.username == "Notch"
        assert fl.login_fresh() is True


async def test_login_user_not_fresh() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        result = await fl.login_user(USERS[NOTCH], fresh=False)
        assert result
        assert fl.current_user.username == "Notch"
        assert fl.login_fresh() is False


async def test_login_inactive_user() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        result = await fl.login_user(USERS[CREEPER])
        assert fl.current_user.is_anonymous
        assert not result


async def test_login_inactive_user_forced() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        await fl.login_user(USERS[CREEPER], force=True)
        assert fl.current_user.username == "Creeper"


async def test_login_user_with_request() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        assert await text(c, "/username?user_id=2") == "Steve"


async def test_login_invalid_user_with_request() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        assert await text(c, "/username?user_id=9000") == "Anonymous"


# --- LoginTestCase: logout ------------------------------------------------------------------


async def test_logout_logs_out_current_user() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        await fl.login_user(USERS[NOTCH])
        await fl.logout_user()
        assert fl.current_user.is_anonymous


# --- LoginTestCase: unauthorized ------------------------------------------------------------


async def test_unauthorized_flashes_message_with_login_view() -> None:
    app, login_manager = login_case()
    login_manager.login_view = "/login"
    expected_message = login_manager.login_message = "Log in!"
    expected_category = login_manager.login_message_category = "login"
    async with serving(app) as c:
        await c.get("/secret")
        msgs = json.loads(await text(c, f"/flashes/{expected_category}"))
        assert msgs == [expected_message]


async def test_unauthorized_flash_message_localized() -> None:
    def _gettext(msg: str) -> str | None:
        return "Einloggen" if msg == "Log in!" else None

    app, login_manager = login_case()
    login_manager.login_view = "/login"
    login_manager.localize_callback = _gettext
    login_manager.login_message = "Log in!"
    expected_category = login_manager.login_message_category = "login"
    async with serving(app) as c:
        await c.get("/secret")
        msgs = json.loads(await text(c, f"/flashes/{expected_category}"))
        assert msgs == ["Einloggen"]


async def test_unauthorized_uses_authorized_handler() -> None:
    app, login_manager = login_case()

    def _callback() -> Response:
        return Response("This is secret!", 401)

    login_manager.unauthorized_handler(_callback)
    async with serving(app) as c:
        result = await c.get("/secret")
        assert result.status_code == 401
        assert await result.get_data(as_text=True) == "This is secret!"


async def test_unauthorized_aborts_with_401() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        result = await c.get("/secret")
        assert result.status_code == 401


async def test_unauthorized_redirects_to_login_view() -> None:
    app, login_manager = login_case()
    login_manager.login_view = "login"

    @app.route("/login")
    async def login() -> str:
        return "Login Form Goes Here!"

    async with serving(app) as c:
        result = await c.get("/secret")
        assert result.status_code == 302
        assert result.location == "/login?next=%2Fsecret"


async def test_unauthorized_with_next_in_session() -> None:
    app, login_manager = login_case(USE_SESSION_FOR_NEXT=True)
    login_manager.login_view = "login"

    @app.route("/login")
    async def login() -> str:
        return str(session.pop("next", ""))

    async with serving(app) as c:
        result = await c.get("/secret")
        assert result.status_code == 302
        assert result.location == "/login"
        assert await text(c, "/login") == "/secret"


async def test_unauthorized_with_next_in_strong_session() -> None:
    app, login_manager = login_case(USE_SESSION_FOR_NEXT=True, SESSION_PROTECTION="strong")
    login_manager.login_view = "login"

    @app.route("/login")
    async def login() -> str:
        if fl.current_user.is_authenticated:  # or anything that touches current_user
            pass
        return str(session.pop("next", ""))

    async with serving(app) as c:
        result = await c.get("/secret")
        assert result.status_code == 302
        assert result.location == "/login"
        assert await text(c, "/login") == "/secret"


def add_login_pages(app: Quart) -> None:
    for name in ("app_login", "first_login", "second_login"):

        async def page() -> str:
            return "Login Form Goes Here!"

        app.add_url_rule(f"/{name}", name, page)


async def test_unauthorized_uses_blueprint_login_view() -> None:
    app, _ = login_case()
    first = Blueprint("first", "first")
    second = Blueprint("second", "second")
    add_login_pages(app)

    @app.route("/protected")
    @login_required
    async def protected() -> str:
        return "Access Granted"

    @first.route("/protected")
    @login_required
    async def first_protected() -> str:
        return "Access Granted"

    @second.route("/protected")
    @login_required
    async def second_protected() -> str:
        return "Access Granted"

    app.register_blueprint(first, url_prefix="/first")
    app.register_blueprint(second, url_prefix="/second")
    async with serving(app) as c:
        async with app.app_context():
            fl.set_login_view("app_login")
            fl.set_login_view("first_login", blueprint=first)
            fl.set_login_view("second_login", blueprint=second)

        result = await c.get("/protected")
        assert result.status_code == 302
        assert result.location == "/app_login?next=%2Fprotected"

        result = await c.get("/first/protected")
        assert result.status_code == 302
        assert result.location == "/first_login?next=%2Ffirst%2Fprotected"

        result = await c.get("/second/protected")
        assert result.status_code == 302
        assert result.location == "/second_login?next=%2Fsecond%2Fprotected"


async def test_set_login_view_without_blueprints() -> None:
    app, _ = login_case()
    add_login_pages(app)

    @app.route("/protected")
    @login_required
    async def protected() -> str:
        return "Access Granted"

    async with serving(app) as c:
        async with app.app_context():
            fl.set_login_view("app_login")
        result = await c.get("/protected")
        assert result.status_code == 302
        assert result.location == "/app_login?next=%2Fprotected"


# --- LoginTestCase: session persistence and freshness ---------------------------------------


async def test_login_persists() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch")
        assert await text(c, "/username") == "Notch"


async def test_logout_persists() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch")
        await c.get("/logout")
        assert await text(c, "/username") == "Anonymous"


async def test_incorrect_id_logs_out() -> None:
    app, login_manager = login_case()

    def new_user_loader(user_id: str) -> None:
        return None

    login_manager.user_loader(new_user_loader)
    async with serving(app) as c:
        await c.get("/login-notch")
        assert await text(c, "/username") == "Anonymous"


async def test_authentication_is_fresh() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch")
        assert await text(c, "/is-fresh") == "True"
        assert await text(c, "/is-remembered") == "False"


async def test_remember_me() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        close_browser(c)
        assert await text(c, "/username") == "Notch"
        assert await text(c, "/is-fresh") == "False"
        assert await text(c, "/is-remembered") == "True"


async def test_remember_me_custom_duration() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember-custom")
        close_browser(c)
        assert await text(c, "/username") == "Notch"
        assert await text(c, "/is-fresh") == "False"
        assert await text(c, "/is-remembered") == "True"


async def test_remember_me_uses_custom_cookie_parameters() -> None:
    duration = timedelta(days=2)
    app, _ = login_case(REMEMBER_COOKIE_DURATION=duration)
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert_expires_in(c, duration)


async def test_remember_me_custom_duration_uses_custom_duration() -> None:
    app, _ = login_case(REMEMBER_COOKIE_DURATION=172800)
    async with serving(app) as c:
        await c.get("/login-notch-remember-custom")
        assert_expires_in(c, timedelta(hours=7))


async def test_remember_me_accepts_duration_as_int() -> None:
    app, _ = login_case(REMEMBER_COOKIE_DURATION=172800)
    async with serving(app) as c:
        result = await c.get("/login-notch-remember")
        assert result.status_code == 200
        assert_expires_in(c, timedelta(seconds=172800))


async def test_remember_me_with_invalid_duration_returns_500_response() -> None:
    app, _ = login_case(REMEMBER_COOKIE_DURATION="123", TESTING=False)
    async with serving(app) as c:
        result = await c.get("/login-notch-remember")
        assert result.status_code == 500


async def test_remember_me_with_invalid_custom_duration_returns_500_resp() -> None:
    app, _ = login_case(TESTING=False)

    @app.route("/login-notch-remember-custom-invalid")
    async def login_notch_remember_custom_invalid() -> str:
        return str(await fl.login_user(USERS[NOTCH], remember=True, duration="123"))

    async with serving(app) as c:
        result = await c.get("/login-notch-remember-custom-invalid")
        assert result.status_code == 500


async def test_set_cookie_with_invalid_custom_duration_raises_exception() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        with pytest.raises(Exception, match=r"duration must be a datetime\.timedelta"):
            await fl.login_user(USERS[NOTCH], remember=True, duration="123")


async def test_remember_me_no_refresh_every_request() -> None:
    app, _ = login_case(REMEMBER_COOKIE_REFRESH_EACH_REQUEST=False)
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        cookies = persistent_cookies(c)
        assert cookies
        close_browser(c)
        response = await c.get("/username")
        assert await response.get_data(as_text=True) == "Notch"
        rewritten = [
            header
            for header in response.headers.getlist("Set-Cookie")
            if header.split("=", 1)[0] in cookies
        ]
        assert rewritten == []
        assert persistent_cookies(c) == cookies


async def test_remember_me_is_unfresh() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        close_browser(c)
        assert await text(c, "/is-fresh") == "False"
        assert await text(c, "/is-remembered") == "True"


async def test_logout_stays_logged_out_with_remember_me() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        await c.get("/logout")
        assert await text(c, "/username") == "Anonymous"


async def test_logout_stays_logged_out_with_remember_me_custom_duration() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember-custom")
        await c.get("/logout")
        assert await text(c, "/username") == "Anonymous"


# --- LoginTestCase: needs refresh -----------------------------------------------------------


async def test_needs_refresh_uses_handler() -> None:
    app, login_manager = login_case()

    def _on_refresh() -> str:
        return "Needs Refresh!"

    login_manager.needs_refresh_handler(_on_refresh)
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert await text(c, "/needs-refresh") == "Needs Refresh!"


async def test_needs_refresh_fires_flash_when_redirect_to_refresh_view() -> None:
    app, login_manager = login_case()
    login_manager.refresh_view = "/refresh_view"
    login_manager.needs_refresh_message = "Refresh"
    login_manager.needs_refresh_message_category = "refresh"
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        await c.get("/needs-refresh")
        msgs = json.loads(await text(c, "/flashes/refresh"))
        assert "Refresh" in msgs


async def test_needs_refresh_flash_message_localized() -> None:
    def _gettext(msg: str) -> str | None:
        return "Aktualisieren" if msg == "Refresh" else None

    app, login_manager = login_case()
    login_manager.refresh_view = "/refresh_view"
    login_manager.localize_callback = _gettext
    login_manager.needs_refresh_message = "Refresh"
    login_manager.needs_refresh_message_category = "refresh"
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        await c.get("/needs-refresh")
        msgs = json.loads(await text(c, "/flashes/refresh"))
        assert "Aktualisieren" in msgs


async def test_needs_refresh_aborts_401() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        result = await c.get("/needs-refresh")
        assert result.status_code == 401


async def test_redirects_to_refresh_view() -> None:
    app, login_manager = login_case()

    @app.route("/refresh-view")
    async def refresh_view() -> str:
        return ""

    login_manager.refresh_view = "refresh_view"
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        result = await c.get("/needs-refresh")
        assert result.status_code == 302
        assert result.location == "/refresh-view?next=%2Fneeds-refresh"


async def test_refresh_with_next_in_session() -> None:
    app, login_manager = login_case(USE_SESSION_FOR_NEXT=True)

    @app.route("/refresh-view")
    async def refresh_view() -> str:
        return str(session.pop("next", ""))

    login_manager.refresh_view = "refresh_view"
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        result = await c.get("/needs-refresh")
        assert result.status_code == 302
        assert result.location == "/refresh-view"
        assert await text(c, "/refresh-view") == "/needs-refresh"


async def test_confirm_login() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        close_browser(c)
        assert await text(c, "/is-fresh") == "False"
        assert await text(c, "/is-remembered") == "True"
        await c.get("/confirm-login")
        assert await text(c, "/is-fresh") == "True"
        assert await text(c, "/is-remembered") == "True"


async def test_session_not_modified() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        response = await c.get("/empty_session")
        assert await response.get_data(as_text=True) == "modified=False"
        # Nothing changed, so nothing is written back to the browser.
        assert response.headers.getlist("Set-Cookie") == []


async def test_invalid_login_cookie() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert c.cookie_jar is not None
        for cookie in c.cookie_jar:
            cookie.value = "foo"
        assert await text(c, "/username") == "Anonymous"


# --- LoginTestCase: session protection ------------------------------------------------------


async def test_session_protection_basic_passes_successive_requests() -> None:
    app, _ = login_case(SESSION_PROTECTION="basic")
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert await text(c, "/username") == "Notch"
        assert await text(c, "/is-fresh") == "True"


async def test_session_protection_strong_passes_successive_requests() -> None:
    app, _ = login_case(SESSION_PROTECTION="strong")
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert await text(c, "/username") == "Notch"
        assert await text(c, "/is-fresh") == "True"


async def test_session_protection_basic_marks_session_unfresh() -> None:
    app, _ = login_case(SESSION_PROTECTION="basic")
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert await text(c, "/username", headers={"User-Agent": "different"}) == "Notch"
        assert await text(c, "/is-fresh") == "False"


async def test_session_protection_basic_skips_when_remember_me() -> None:
    app, _ = login_case(SESSION_PROTECTION="basic")
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        close_browser(c)
        assert await text(c, "/username") == "Notch"


async def test_session_protection_strong_skips_when_remember_me() -> None:
    app, _ = login_case(SESSION_PROTECTION="strong")
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        close_browser(c)
        assert await text(c, "/username") == "Notch"


async def test_permanent_strong_session_protection_marks_session_unfresh() -> None:
    app, _ = login_case(SESSION_PROTECTION="strong")
    async with serving(app) as c:
        # The remembered login is the permanent one here (see the module docstring).
        await c.get("/login-notch-remember")
        assert await text(c, "/username", headers={"User-Agent": "different"}) == "Notch"
        assert await text(c, "/is-fresh") == "False"


async def test_session_protection_strong_deletes_session() -> None:
    app, _ = login_case(SESSION_PROTECTION="strong")
    async with serving(app) as c:
        # Unrelated data in the session must survive.
        async with c.session_transaction() as sess:
            sess["foo"] = "bar"
        # Not remembered: a remembered (permanent) login is only marked stale, as above.
        await c.get("/login-notch")
        assert await text(c, "/username", headers={"User-Agent": "different"}) == "Anonymous"
        async with c.session_transaction() as sess:
            assert sess.get("foo") == "bar"


async def test_session_protection_skip_when_off_and_anonymous() -> None:
    app, _ = login_case()
    async with serving(app) as c:
        await c.get("/")
        response = await c.get("/username")
        assert await response.get_data(as_text=True) == "Anonymous"
        assert response.headers.getlist("Set-Cookie") == []


async def test_session_protection_skip_when_basic_and_anonymous() -> None:
    app, _ = login_case(SESSION_PROTECTION="basic")
    async with serving(app) as c:
        await c.get("/")
        response = await c.get("/username")
        assert await response.get_data(as_text=True) == "Anonymous"
        assert response.headers.getlist("Set-Cookie") == []


# --- LoginTestCase: view decorators ---------------------------------------------------------


async def test_login_required_decorator() -> None:
    app, _ = login_case()

    @app.route("/protected")
    @login_required
    def protected() -> str:
        return "Access Granted"

    async with serving(app) as c:
        result = await c.get("/protected")
        assert result.status_code == 401
        await c.get("/login-notch")
        assert "Access Granted" in await text(c, "/protected")


async def test_login_required_decorator_with_async() -> None:
    app, _ = login_case()

    @app.route("/protected")
    @login_required
    async def protected() -> str:
        return "Access Granted"

    async with serving(app) as c:
        result = await c.get("/protected")
        assert result.status_code == 401
        await c.get("/login-notch")
        result = await c.get("/protected")
        assert result.status_code == 200
        await c.get("/login-notch")
        assert "Access Granted" in await text(c, "/protected")


async def test_fresh_login_required_decorator() -> None:
    app, _ = login_case()

    @app.route("/very-protected")
    @fresh_login_required
    def very_protected() -> str:
        return "Access Granted"

    async with serving(app) as c:
        result = await c.get("/very-protected")
        assert result.status_code == 401
        await c.get("/login-notch-remember")
        assert await text(c, "/very-protected") == "Access Granted"
        close_browser(c)
        result = await c.get("/very-protected")
        assert result.status_code == 401
        await c.get("/confirm-login")
        assert await text(c, "/very-protected") == "Access Granted"


# --- LoginTestCase: misc --------------------------------------------------------------------


async def test_user_context_processor() -> None:
    app, _ = login_case()
    async with serving(app), app.test_request_context("/"):
        rendered = await render_template_string("{{ current_user.is_anonymous }}")
        assert rendered == "True"


# --- LoginViaRequestTestCase ----------------------------------------------------------------


def request_case() -> tuple[Quart, Any]:
    """LoginViaRequestTestCase.setUp: a request loader, and no user loader."""
    app = bare_app(SESSION_PROTECTION=None)
    login_manager = fl.LoginManager()
    login_manager.init_app(app)

    @app.route("/")
    async def index() -> str:
        return "Welcome!"

    @app.route("/login-notch")
    async def login_notch() -> str:
        return str(await fl.login_user(USERS[NOTCH]))

    @app.route("/username")
    async def username() -> tuple[str, int] | str:
        if fl.current_user.is_authenticated:
            return str(fl.current_user.username)
        return "Anonymous", 401

    @app.route("/logout")
    async def logout() -> str:
        return str(await fl.logout_user())

    def load_user_from_request(request: Request) -> SiteUser | None:
        user_id: Any = request.args.get("user_id")
        with suppress(TypeError):
            user_id = int(float(user_id))
        return USERS.get(user_id)

    login_manager.request_loader(load_user_from_request)
    return app, login_manager


async def test_has_no_user_loader_callback() -> None:
    _, login_manager = request_case()
    assert login_manager.user_callback is None


async def test_request_context_users_are_anonymous() -> None:
    app, _ = request_case()
    async with serving(app), app.test_request_context("/"):
        assert fl.current_user.is_anonymous


async def test_via_request_defaults_anonymous() -> None:
    app, _ = request_case()
    async with serving(app) as c:
        result = await c.get("/username")
        assert result.status_code == 401


async def test_login_via_request() -> None:
    app, _ = request_case()
    async with serving(app) as c:
        assert await text(c, "/username?user_id=2") == "Steve"


async def test_via_request_login_invalid_user_with_request() -> None:
    app, _ = request_case()
    async with serving(app) as c:
        result = await c.get("/username?user_id=9000")
        assert result.status_code == 401


async def test_login_invalid_user_with_request_when_already_logged_in() -> None:
    app, _ = request_case()
    async with serving(app) as c:
        assert await text(c, "/login-notch") == "True"
        result = await c.get("/username?user_id=9000")
        assert result.status_code == 401


async def test_login_user_with_request_does_not_modify_session() -> None:
    app, _ = request_case()
    async with serving(app) as c:
        assert await text(c, "/username?user_id=2") == "Steve"
        assert await text(c, "/username") == "Anonymous"


# --- TestLoginUrlGeneration -----------------------------------------------------------------


def url_case() -> Quart:
    app = Quart(__name__)
    fl.LoginManager().init_app(app)

    @app.route("/login")
    async def login() -> str:
        return ""

    return app


async def test_make_next_param() -> None:
    app = url_case()
    async with app.test_request_context("/"):
        assert fl.make_next_param("/login", "http://localhost/profile") == "/profile"
        url = fl.make_next_param("https://localhost/login", "http://localhost/profile")
        assert url == "http://localhost/profile"
        url = fl.make_next_param("http://accounts.localhost/login", "http://localhost/profile")
        assert url == "http://localhost/profile"


async def test_login_url_generation() -> None:
    app = url_case()
    async with app.test_request_context("/"):
        protected = "http://localhost/protected"
        assert fl.login_url("/login", protected, "n") == "/login?n=%2Fprotected"
        assert fl.login_url("/login", protected) == "/login?next=%2Fprotected"
        expected = "https://auth.localhost/login?next=http%3A%2F%2Flocalhost%2Fprotected"
        assert fl.login_url("https://auth.localhost/login", protected) == expected
        url = fl.login_url("/login?affil=cgnu", protected)
        assert url == "/login?affil=cgnu&next=%2Fprotected"


async def test_login_url_generation_with_view() -> None:
    app = url_case()
    async with app.test_request_context("/"):
        assert fl.login_url("login", "/protected") == "/login?next=%2Fprotected"


def test_login_url_no_next_url() -> None:
    assert fl.login_url("/foo") == "/foo"


# --- UserMixinTestCase, AnonymousUserTestCase -----------------------------------------------


class ImplicitIdUser(UserMixin):
    def __init__(self, id: Any) -> None:
        self.id = id


class ExplicitIdUser(UserMixin):
    def __init__(self, name: str) -> None:
        self.name = name


def test_default_values() -> None:
    user = ImplicitIdUser(1)
    assert user.is_active
    assert user.is_authenticated
    assert not user.is_anonymous


def test_get_id_from_id_attribute() -> None:
    assert ImplicitIdUser(1).get_id() == "1"


def test_get_id_not_implemented() -> None:
    user = ExplicitIdUser("Notch")
    with pytest.raises(NotImplementedError):
        user.get_id()


def test_equality() -> None:
    first = ImplicitIdUser(1)
    same = ImplicitIdUser(1)
    different = ImplicitIdUser(2)
    # The operators themselves, both of them.
    assert first == same
    assert not first == different  # noqa: SIM201
    assert not first != same  # noqa: SIM202
    assert first != different
    other: object = "1"
    assert not first == other  # noqa: SIM201
    assert first != other


def test_hashable() -> None:
    assert hash(UserMixin()) is not None
    assert hash(ImplicitIdUser(1)) is not None


def test_values() -> None:
    user: Any = AnonymousUserMixin()
    assert not user.is_active
    assert not user.is_authenticated
    assert user.is_anonymous
    assert user.get_id() is None


# --- StrictHostForRedirectsTestCase ---------------------------------------------------------


def strict_host_case(**config: Any) -> Quart:
    app = bare_app(SESSION_PROTECTION=None, **config)
    login_manager = fl.LoginManager()
    login_manager.init_app(app)
    login_manager.login_view = "login"

    @app.route("/secret")
    async def secret() -> Any:
        return await login_manager.unauthorized()

    @app.route("/login")
    async def login() -> str:
        return str(session.pop("next", ""))

    def load_user(user_id: str) -> SiteUser:
        return USERS[int(user_id)]

    login_manager.user_loader(load_user)
    return app


async def test_unauthorized_uses_host_from_next_url() -> None:
    app = strict_host_case(FORCE_HOST_FOR_REDIRECTS=None)
    async with serving(app) as c:
        result = await c.get("/secret", headers={"Host": "foo.com"})
        assert result.status_code == 302
        assert result.location == "/login?next=%2Fsecret"


async def test_unauthorized_uses_host_from_config_when_available() -> None:
    app = strict_host_case(FORCE_HOST_FOR_REDIRECTS="good.com")
    async with serving(app) as c:
        result = await c.get("/secret", headers={"Host": "bad.com"})
        assert result.status_code == 302
        assert result.location == "//good.com/login?next=%2Fsecret"


# --- What a Flask developer moving an app over also writes ----------------------------------


async def test_login_manager_on_a_bare_app() -> None:
    app = bare_app()
    login_manager = fl.LoginManager(app)

    @app.route("/username")
    async def username() -> str:
        return "in" if fl.current_user.is_authenticated else "out"

    login_manager.user_loader(lambda user_id: USERS[int(user_id)])
    async with serving(app) as c:
        assert await text(c, "/username") == "out"


async def test_async_callbacks_are_accepted_too() -> None:
    app, login_manager = login_case()
    login_manager.login_view = None

    async def load_user(user_id: str) -> SiteUser:
        return USERS[int(user_id)]

    async def load_user_from_request(request: Request) -> SiteUser | None:
        return USERS.get(int(request.args.get("user_id", "0")))

    async def unauthorized() -> Response:
        return Response("Async says no", 401)

    login_manager.user_loader(load_user)
    login_manager.request_loader(load_user_from_request)
    login_manager.unauthorized_handler(unauthorized)
    async with serving(app) as c:
        assert await text(c, "/username?user_id=2") == "Steve"
        assert await text(c, "/secret") == "Async says no"
        await c.get("/login-notch")
        assert await text(c, "/username") == "Notch"


async def test_request_loader_receives_the_request() -> None:
    app, login_manager = login_case()
    received: list[Any] = []

    def load_user_from_request(arg: Any) -> None:
        received.append(arg)

    login_manager.request_loader(load_user_from_request)
    async with serving(app) as c:
        assert await text(c, "/username?user_id=2") == "Anonymous"
    assert received
    assert all(isinstance(arg, Request) for arg in received)


async def test_request_loader_argument_is_the_current_request() -> None:
    app, login_manager = login_case()
    paths: list[str] = []

    def load_user_from_request(arg: Request) -> None:
        paths.append(f"{arg.path}?{arg.args.get('user_id')}")
        assert arg is cast(Any, request)._get_current_object()

    login_manager.request_loader(load_user_from_request)
    async with serving(app) as c:
        await c.get("/username?user_id=2")
    assert paths == ["/username?2"]


async def test_login_fresh_in_the_request_that_logged_in() -> None:
    app, _ = login_case()

    @app.route("/login-and-check")
    async def login_and_check() -> str:
        await fl.login_user(USERS[NOTCH])
        return f"{fl.login_fresh()}:{fl.current_user.username}"

    async with serving(app) as c:
        assert await text(c, "/login-and-check") == "True:Notch"


async def test_login_view_may_be_a_url() -> None:
    app, login_manager = login_case()
    login_manager.login_view = "/login"

    @app.route("/protected")
    @login_required
    async def protected() -> str:
        return "Access Granted"

    async with serving(app) as c:
        result = await c.get("/protected")
        assert result.status_code == 302
        assert result.location == "/login?next=%2Fprotected"


async def test_blueprint_login_views_none_key_serves_the_app_routes() -> None:
    app, login_manager = login_case()
    add_login_pages(app)
    login_manager.blueprint_login_views[None] = "app_login"

    @app.route("/protected")
    @login_required
    async def protected() -> str:
        return "Access Granted"

    async with serving(app) as c:
        result = await c.get("/protected")
        assert result.status_code == 302
        assert result.location == "/app_login?next=%2Fprotected"


async def test_remember_cookie_duration_as_timedelta() -> None:
    app, _ = login_case(REMEMBER_COOKIE_DURATION=timedelta(days=14))
    async with serving(app) as c:
        await c.get("/login-notch-remember")
        assert_expires_in(c, timedelta(days=14))
        close_browser(c)
        assert await text(c, "/username") == "Notch"


async def test_session_protection_default_is_basic() -> None:
    app = bare_app()
    login_manager = fl.LoginManager(app)
    assert login_manager.session_protection == "basic"


@pytest.mark.parametrize(
    ("protection", "username", "fresh"),
    [(None, "Notch", "True"), ("basic", "Notch", "False"), ("strong", "Anonymous", "False")],
)
async def test_session_protection_attribute_is_honoured(
    protection: str | None, username: str, fresh: str
) -> None:
    app, login_manager = login_case()
    del app.config["SESSION_PROTECTION"]
    login_manager.session_protection = protection
    async with serving(app) as c:
        await c.get("/login-notch")
        assert await text(c, "/username", headers={"User-Agent": "different"}) == username
        assert await text(c, "/is-fresh") == fresh


async def test_anonymous_user_factory() -> None:
    class Guest(AnonymousUserMixin):
        name = "Guest"

    app, login_manager = login_case()
    login_manager.anonymous_user = Guest

    @app.route("/guest")
    async def guest() -> str:
        return f"{type(fl.current_user._get_current_object()).__name__}:{fl.current_user.name}"

    async with serving(app) as c:
        assert await text(c, "/guest") == "Guest:Guest"


# --- The same semantics on quart_app's own site ---------------------------------------------


@pytest.fixture
def site_manager() -> Iterator[LoginManager]:
    """quart_app's LoginManager, put back as it was after the test changes it."""
    manager = quart_app.login_manager
    saved = dict(vars(manager))
    yield manager
    vars(manager).clear()
    vars(manager).update(saved)


async def test_tutorial_user_loader_serves_the_site(
    site_manager: LoginManager, app: Quart, auth: AuthActions
) -> None:
    login_manager = site_manager

    @login_manager.user_loader
    async def load_user(user_id: str) -> SiteUser | None:
        return await SiteUser.get_or_none(id=user_id)

    await auth.register("alice")
    index = await auth.client.get("/index/")
    assert index.status_code == 200
    assert "alice" in await index.get_data(as_text=True)
    assert (await auth.client.get("/account/")).status_code == 200
    await auth.logout()
    assert (await auth.client.get("/index/")).status_code == 302
    await auth.login("alice")
    assert (await auth.client.get("/index/")).status_code == 200


async def test_site_login_fresh_in_the_request_that_logged_in(
    app: Quart, auth: AuthActions
) -> None:
    await auth.register("alice")

    @app.route("/login-and-check")
    async def login_and_check() -> str:
        await fl.login_user(await SiteUser.get(username="alice"))
        return str(fl.login_fresh())

    assert await text(auth.client, "/login-and-check") == "True"


async def test_site_login_view_may_be_a_url(
    site_manager: LoginManager, app: Quart, client: Client
) -> None:
    site_manager.login_view = "/login/"
    response = await client.get("/index/")
    assert response.status_code == 302
    assert response.location == "/login/?next=%2Findex%2F"


async def test_site_remember_cookie_duration_as_timedelta(
    make_app: AppFactory,
) -> None:
    app = await make_app(REMEMBER_COOKIE_DURATION=timedelta(days=14))
    auth = AuthActions(app.test_client())
    await auth.register("alice")
    await auth.logout()
    await auth.login("alice", remember=True)
    assert (await auth.client.get("/index/")).status_code == 200
    assert_expires_in(auth.client, timedelta(days=14))
