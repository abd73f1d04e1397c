"""quart_app.testing and its pytest plugin: logged-in test clients on real sessions."""

from __future__ import annotations

import pytest
from quart import Quart

from quart_app.models import AuthSession, User
from quart_app.testing import (
    PASSWORD,
    LoginTestClient,
    authenticated_client,
    csrf_token,
    make_user,
)

from .conftest import auth_cookie

pytest_plugins = ["pytester"]

OTHER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
async def user(app: Quart) -> User:
    app.test_client_class = LoginTestClient  # type: ignore[assignment]
    return await make_user(app, "alice")


async def test_a_login_required_page_in_three_lines(app: Quart, user: User) -> None:
    client = app.test_client(user=user)
    response = await client.get("/index/")
    assert "alice" in await response.get_data(as_text=True)
    row = await AuthSession.get(user_id=user.id)
    assert (row.ip, row.user_agent, row.fresh, row.remember) == ("127.0.0.1", "Quart", True, False)


async def test_the_client_logs_in_at_its_first_request(app: Quart, user: User) -> None:
    client = app.test_client(user=user)
    assert await AuthSession.all().count() == 0
    assert (await client.get("/index/")).status_code == 200
    assert await AuthSession.all().count() == 1
    assert (await client.get("/index/")).status_code == 200
    assert await AuthSession.all().count() == 1


async def test_make_user_knows_the_password(app: Quart, user: User) -> None:
    client = app.test_client()
    form = {
        "username": "alice",
        "password": PASSWORD,
        "csrf_token": await csrf_token(client, "/login/"),
    }
    response = await client.post("/login/", form=form)
    assert (response.status_code, response.headers["Location"]) == (303, "/index/")


async def test_logout_through_the_client_ends_the_real_session(app: Quart, user: User) -> None:
    client = app.test_client(user=user)
    cookie = auth_cookie(client)
    assert cookie is None  # not yet: the session is made at the first request
    token = await csrf_token(client, "/logout/")
    cookie = auth_cookie(client)
    response = await client.post("/logout/", form={"csrf_token": token})
    assert response.status_code == 303
    assert await AuthSession.all().count() == 0
    replay = app.test_client()
    replay.set_cookie("localhost", "quart_app_auth", str(cookie))
    assert (await replay.get("/index/")).status_code == 302


async def test_revoking_the_session_from_another_client_logs_it_out(app: Quart, user: User) -> None:
    first = app.test_client(user=user)
    assert (await first.get("/index/")).status_code == 200
    second = app.test_client(user=user)
    listing = await (await second.get("/api/sessions")).get_json()
    [other] = [s for s in listing["sessions"] if not s["current"]]
    assert (await second.delete(f"/api/sessions/{other['id']}")).status_code == 204
    assert (await first.get("/index/")).status_code == 302
    assert (await second.get("/index/")).status_code == 200


async def test_strong_protection_ends_it_for_another_user_agent(app: Quart, user: User) -> None:
    client = app.test_client(user=user)
    assert (await client.get("/index/")).status_code == 200
    response = await client.get("/index/", headers={"User-Agent": OTHER_AGENT})
    assert response.status_code == 302
    assert await AuthSession.all().count() == 0


async def test_the_client_may_present_its_own_user_agent(app: Quart, user: User) -> None:
    client = app.test_client(user=user, user_agent=OTHER_AGENT)
    assert (await client.get("/index/")).status_code == 200
    row = await AuthSession.get(user_id=user.id)
    assert (row.user_agent, row.device) == (OTHER_AGENT, "Firefox 128\tLinux")


async def test_a_stale_login_is_sent_to_confirm(app: Quart, user: User) -> None:
    client = app.test_client(user=user, fresh_login=False)
    assert (await client.get("/index/")).status_code == 200
    response = await client.get("/account/password/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/confirm/?next=")
    fresh = app.test_client(user=user)
    assert (await fresh.get("/account/password/")).status_code == 200


async def test_remember_makes_a_remembered_fresh_session(app: Quart, user: User) -> None:
    client = app.test_client(user=user, remember=True)
    assert (await client.get("/account/password/")).status_code == 200  # still fresh here
    row = await AuthSession.get(user_id=user.id)
    assert (row.remember, row.fresh) == (True, True)
    assert client.cookie_jar is not None
    [cookie] = [c for c in client.cookie_jar if c.name == "quart_app_auth"]
    assert cookie.expires is not None  # persistent, not a browser-session cookie


async def test_the_context_manager_logs_in_and_out(app: Quart, user: User) -> None:
    client = app.test_client()
    async with authenticated_client(client, user) as same:
        assert same is client
        assert (await client.get("/index/")).status_code == 200
        assert await AuthSession.all().count() == 1
    assert await AuthSession.all().count() == 0
    assert (await client.get("/index/")).status_code == 302


async def test_the_context_manager_with_quarts_plain_client(app: Quart, user: User) -> None:
    app.test_client_class = Quart.test_client_class
    client = app.test_client()
    assert not isinstance(client, LoginTestClient)
    async with authenticated_client(client, user):
        assert (await client.get("/index/")).status_code == 200
    assert (await client.get("/index/")).status_code == 302


async def test_a_socket_as_the_first_request_is_logged_in(app: Quart, user: User) -> None:
    client = app.test_client(user=user)
    async with client.websocket("/ws/session") as socket:
        assert await AuthSession.all().count() == 1
        await socket.close(1000)


EXAMPLE_CONFTEST = """
pytest_plugins = ["quart_app.pytest_plugin"]

import pytest
from quart_app import create_app
from quart_app.login import current_user, login_required


@pytest.fixture
def app_factory():
    def factory(config):
        app = create_app(config)

        @app.get("/hello/")
        @login_required
        async def hello():
            return f"hello {current_user.username}"

        return app

    return factory
"""

EXAMPLE_TESTS = """
from quart_app.models import User
from quart_app.testing import PASSWORD


async def test_the_new_page_logged_in(logged_in_client):
    response = await logged_in_client.get("/hello/")
    assert await response.get_data(as_text=True) == "hello alice"


async def test_the_new_page_anonymous(client):
    assert (await client.get("/hello/")).status_code == 302


async def test_flask_logins_call(app, user):
    client = app.test_client(user=user, fresh_login=False)
    assert (await client.get("/hello/")).status_code == 200


async def test_the_user_logs_in_with_the_form(client, user, csrf_token):
    token = await csrf_token(client, "/login/")
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    assert (await client.post("/login/", form=form)).status_code == 303


async def test_each_test_has_its_own_database(user):
    assert await User.all().count() == 1
"""


def test_the_plugin_in_an_apps_own_tests(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makeconftest(EXAMPLE_CONFTEST)
    pytester.makepyfile(test_example=EXAMPLE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
