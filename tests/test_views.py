"""Every row of the contract's HTML table, CSRF, safe redirects, headers and bad input."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.models import User
from quart_app.redirects import safe_next

from .conftest import PASSWORD, AppFactory, AuthActions, csrf_token


async def test_root_redirects_to_index(client: Client) -> None:
    response = await client.get("/")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/index/"


async def test_index_anonymous_redirects_to_login_with_next(client: Client) -> None:
    response = await client.get("/index/")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/login/?next=%2Findex%2F"


async def test_index_greets_the_user(client: Client, auth: AuthActions) -> None:
    await auth.register("Zoë_1")
    response = await client.get("/index/")
    assert response.status_code == 200
    assert "Zoë_1" in await response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/register/", ("username", "password", "password_confirm", "csrf_token")),
        ("/login/", ("username", "password", "remember", "csrf_token")),
    ],
)
async def test_forms_have_their_fields(client: Client, path: str, fields: tuple[str, ...]) -> None:
    response = await client.get(path)
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    for field in fields:
        assert f'name="{field}"' in body
    assert 'type="password"' in body
    assert 'type="hidden" value="' in body  # the CSRF token


async def test_register_form_password_fields_are_passwords(client: Client) -> None:
    body = await (await client.get("/register/")).get_data(as_text=True)
    assert body.count('type="password"') == 2
    assert 'autocomplete="new-password"' in body
    assert 'autocomplete="username"' in body
    assert '<label for="password_confirm">' in body


async def test_register_logs_in_and_redirects(client: Client, auth: AuthActions) -> None:
    response = await auth.register("Alice")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/index/"
    assert await User.filter(username="Alice").count() == 1
    assert (await client.get("/index/")).status_code == 200


@pytest.mark.parametrize(
    ("username", "password", "confirm", "message"),
    [
        ("a", PASSWORD, None, "2 to 32 characters"),
        ("bad name", PASSWORD, None, "only letters"),
        ("<b>x</b>", PASSWORD, None, "only letters"),
        ("alice", "short", None, "8 to 1024"),
        ("alice", "password1", None, "too common"),
        ("alice", "xxalice-and-more", None, "must not contain the username"),
        ("alice", PASSWORD, PASSWORD + "!", "do not match"),
    ],
)
async def test_register_invalid_shows_message_and_keeps_username(
    client: Client,
    auth: AuthActions,
    username: str,
    password: str,
    confirm: str | None,
    message: str,
) -> None:
    response = await auth.register(username, password, confirm)
    body = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in body
    assert 'class="error"' in body
    assert await User.all().count() == 0
    assert PASSWORD not in body  # passwords are never echoed back
    if username == "alice":
        assert 'value="alice"' in body


async def test_register_taken_name_is_400_and_creates_nothing(
    client: Client, auth: AuthActions
) -> None:
    await auth.register("Alice")
    await auth.logout()
    response = await auth.register("ALICE")
    assert response.status_code == 400
    assert "already taken" in await response.get_data(as_text=True)
    assert await User.all().count() == 1


async def test_login_page_when_logged_in_redirects(client: Client, auth: AuthActions) -> None:
    await auth.register()
    response = await client.get("/login/")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/index/"


async def test_login_redirects_to_safe_next(client: Client, auth: AuthActions) -> None:
    await auth.register()
    await auth.logout()
    response = await auth.login(next="%2Findex%2F%3Fa%3D1")
    assert response.headers["Location"] == "/index/?a=1"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https:evil.example",
        "https://evil.example/",
        "http://localhost/index/",
        "javascript:alert(1)",
        "index/",
        "/\t/evil.example",
        "",
        None,
    ],
)
async def test_unsafe_next_falls_back_to_index(app: Quart, target: str | None) -> None:
    async with app.test_request_context("/login/"):
        assert safe_next(target) == "/index/"


async def test_safe_next_keeps_local_paths(app: Quart) -> None:
    async with app.test_request_context("/login/"):
        assert safe_next("/index/?tab=1#top") == "/index/?tab=1#top"


async def test_login_with_unsafe_next_goes_to_index(client: Client, auth: AuthActions) -> None:
    await auth.register()
    await auth.logout()
    response = await auth.login(next="%2F%2Fevil.example%2F")
    assert response.headers["Location"] == "/index/"


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: Client, auth: AuthActions
) -> None:
    await auth.register()
    await auth.logout()
    wrong = await auth.login("alice", "not the password at all")
    unknown = await auth.login("nobody", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    wrong_body = await wrong.get_data(as_text=True)
    unknown_body = await unknown.get_data(as_text=True)
    assert "Invalid username or password." in wrong_body
    strip = [csrf_token(wrong_body), csrf_token(unknown_body), 'value="alice"', 'value="nobody"']
    for text in strip:
        wrong_body = wrong_body.replace(text, "")
        unknown_body = unknown_body.replace(text, "")
    assert wrong_body == unknown_body


@pytest.mark.parametrize("missing", ["username", "password"])
async def test_login_missing_field_is_400(client: Client, auth: AuthActions, missing: str) -> None:
    form = {"username": "alice", "password": PASSWORD, "csrf_token": await auth.token("/login/")}
    del form[missing]
    response = await client.post("/login/", form=form)
    assert response.status_code == 400


async def test_credentials_in_query_string_are_ignored(client: Client, auth: AuthActions) -> None:
    await auth.register()
    await auth.logout()
    token = await auth.token("/login/")
    response = await client.post(
        f"/login/?username=alice&password={PASSWORD}", form={"csrf_token": token}
    )
    assert response.status_code == 400
    assert (await client.get("/index/")).status_code == 302


async def test_logout_get_shows_a_post_form(client: Client, auth: AuthActions) -> None:
    await auth.register()
    response = await client.get("/logout/")
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'method="post" action="/logout/"' in body
    assert (await client.get("/index/")).status_code == 200  # GET changed nothing


async def test_logout_anonymous_redirects_to_login(client: Client) -> None:
    response = await client.get("/logout/")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/login/"


async def test_logout_post_flashes_and_redirects(client: Client, auth: AuthActions) -> None:
    await auth.register()
    response = await auth.logout()
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/login/"
    page = await client.get("/login/")
    assert "You have been logged out." in await page.get_data(as_text=True)


@pytest.mark.parametrize("token", [None, "", "20991231000000##deadbeef", "garbage"])
@pytest.mark.parametrize("path", ["/register/", "/logout/"])
async def test_post_without_valid_csrf_is_400_and_changes_nothing(
    client: Client, auth: AuthActions, path: str, token: str | None
) -> None:
    await auth.register("Carol")
    form = {"username": "dave", "password": PASSWORD, "password_confirm": PASSWORD}
    if token is not None:
        form["csrf_token"] = token
    response = await client.post(path, form=form)
    assert response.status_code == 400
    assert await User.all().count() == 1
    assert (await client.get("/index/")).status_code == 200  # still logged in as Carol


@pytest.mark.parametrize("token", [None, "", "20991231000000##deadbeef", "garbage"])
async def test_login_without_valid_csrf_is_400_and_logs_nobody_in(
    app: Quart, auth: AuthActions, token: str | None
) -> None:
    await auth.register("Carol")
    client = app.test_client()
    await client.get("/login/")  # a session of its own, as a browser would have
    form = {"username": "Carol", "password": PASSWORD}
    if token is not None:
        form["csrf_token"] = token
    response = await client.post("/login/", form=form)
    assert response.status_code == 400
    assert (await client.get("/index/")).status_code == 302


async def test_csrf_token_of_another_visitor_is_refused(app: Quart, auth: AuthActions) -> None:
    other = AuthActions(app.test_client())
    stolen = await other.token("/register/")
    response = await auth.client.post(
        "/register/",
        form={
            "username": "mallory",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": stolen,
        },
    )
    assert response.status_code == 400
    assert await User.all().count() == 0


async def test_security_headers(client: Client) -> None:
    response = await client.get("/login/")
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    for directive in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "script-src 'self'" in csp
    assert headers["Referrer-Policy"]
    assert "Strict-Transport-Security" not in headers  # development
    assert "Server" not in headers
    assert "Access-Control-Allow-Origin" not in headers


async def test_no_cors_for_foreign_origin(client: Client) -> None:
    response = await client.get("/login/", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_usernames_are_escaped(client: Client, auth: AuthActions) -> None:
    response = await auth.register("<script>")
    body = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<script>" not in body
    assert "&lt;script&gt;" in body


async def test_body_over_one_mebibyte_is_413(client: Client, auth: AuthActions) -> None:
    token = await auth.token("/register/")
    response = await client.post(
        "/register/",
        form={"username": "x" * (1024 * 1024 + 10), "password": "p", "csrf_token": token},
    )
    assert response.status_code == 413
    assert await User.all().count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"username=al%FFice&password=correct+horse+battery&password_confirm=correct+horse+battery",
        b"username=al%00ice&password=correct+horse+battery&password_confirm=correct+horse+battery",
        b"username=alice&password=correct%00horse&password_confirm=correct%00horse",
        b"username=" + b"a" * 5000 + b"&password=correct+horse+battery"
        b"&password_confirm=correct+horse+battery",
        b"password=" + b"p" * 5000 + b"&password_confirm=" + b"p" * 5000 + b"&username=alice",
        b"%%%%&&&===",
        b"",
    ],
)
async def test_malformed_register_input_is_400(
    client: Client, auth: AuthActions, body: bytes
) -> None:
    token = await auth.token("/register/")
    response = await client.post(
        "/register/",
        data=body + b"&csrf_token=" + token.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert await User.all().count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"username=al%FFice&password=x",
        b"username=alice&password=a%00b",
        b"username=" + b"a" * 100_000 + b"&password=x",
        b"username=alice&password=" + b"p" * 100_000,
    ],
)
async def test_malformed_login_input_is_4xx_never_500(
    client: Client, auth: AuthActions, body: bytes
) -> None:
    token = await auth.token("/login/")
    response = await client.post(
        "/login/",
        data=body + b"&csrf_token=" + token.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 401)


async def test_json_body_on_a_form_page_is_400(client: Client) -> None:
    response = await client.post("/login/", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400


async def test_unknown_page_is_404_page(client: Client) -> None:
    response = await client.get("/nope/")
    assert response.status_code == 404
    assert "404" in await response.get_data(as_text=True)


async def test_throttled_login_is_429_with_retry_after(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMITER_ENABLED=True, LOGIN_FAILURES_PER_ACCOUNT="3/15 minutes")
    auth = AuthActions(app.test_client())
    await auth.register()
    await auth.logout()
    statuses = [(await auth.login("alice", "wrong password!")).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    throttled = await auth.login("alice", PASSWORD)  # even the right password waits
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 15 * 60
    unknown = [(await auth.login("ghost", "wrong password!")).status_code for _ in range(4)]
    assert unknown == [401, 401, 401, 429]  # unknown names are throttled alike


async def test_throttled_registration_is_429(make_app: AppFactory) -> None:
    app = await make_app(RATE_LIMITER_ENABLED=True, REGISTRATIONS_PER_ADDRESS="2/hour")
    client = app.test_client()
    auth = AuthActions(client)
    for name in ("user1", "user2"):
        assert (await auth.register(name)).status_code in (302, 303)
        await auth.logout()
    response = await auth.register("user3")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert await User.all().count() == 2


@pytest.mark.parametrize("path", ["/login/", "/register/", "/logout/", "/index/", "/"])
async def test_head_answers_like_get(client: Client, auth: AuthActions, path: str) -> None:
    anonymous = (await client.head(path)).status_code
    assert anonymous == (await client.get(path)).status_code
    await auth.register()
    assert (await client.head(path)).status_code == (await client.get(path)).status_code
