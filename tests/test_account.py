"""The account pages, ending sessions, password change, fresh logins and the live socket."""

from __future__ import annotations

import asyncio
import json

import pytest
from quart import Quart
from quart.testing import WebsocketResponseError
from quart.typing import TestClientProtocol as Client

from quart_app.models import ApiToken, AuthSession, User

from .conftest import PASSWORD, AppFactory, AuthActions, auth_cookie, csrf_token

NEW_PASSWORD = "a brand new passphrase"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


async def logged_in(app: Quart, remember: bool = False) -> AuthActions:
    """Another browser of the same user, logged in through the form."""
    other = AuthActions(app.test_client())
    response = await other.login(remember=remember)
    assert response.status_code in (302, 303)
    return other


async def post_form(client: Client, page: str, action: str, **fields: str) -> int:
    body = await (await client.get(page)).get_data(as_text=True)
    response = await client.post(action, form={"csrf_token": csrf_token(body), **fields})
    return response.status_code


async def index_status(client: Client) -> int:
    return (await client.get("/index/")).status_code


async def test_account_page_lists_sessions(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    await logged_in(app)
    response = await auth.client.get("/account/")
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.count("data-session-id=") == 2
    assert body.count("This session") == 1
    assert "End this session" in body
    assert "Log out everywhere else" in body
    assert response.headers["Cache-Control"] == "no-store"


async def test_account_page_needs_a_login(client: Client) -> None:
    response = await client.get("/account/")
    assert response.headers["Location"] == "/login/?next=%2Faccount%2F"


async def test_end_another_session_from_the_page(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    other = await logged_in(app)
    other_row = await AuthSession.filter().order_by("-id").first()
    assert other_row is not None
    status = await post_form(auth.client, "/account/", f"/account/sessions/{other_row.id}/end")
    assert status == 303
    assert await index_status(other.client) == 302
    assert await index_status(auth.client) == 200


async def test_cannot_end_someone_elses_session(app: Quart, auth: AuthActions) -> None:
    await auth.register("alice")
    mallory = AuthActions(app.test_client())
    await mallory.register("mallory")
    alice_row = await AuthSession.get(user__username="alice")
    await post_form(mallory.client, "/account/password/", f"/account/sessions/{alice_row.id}/end")
    assert await index_status(auth.client) == 200


async def test_end_session_without_csrf_is_refused(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    other = await logged_in(app)
    row = await AuthSession.filter().order_by("-id").first()
    assert row is not None
    response = await auth.client.post(f"/account/sessions/{row.id}/end")
    assert response.status_code == 400
    assert await index_status(other.client) == 200


async def test_log_out_everywhere_else(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    others = [await logged_in(app) for _ in range(2)]
    status = await post_form(auth.client, "/account/", "/account/sessions/end-others")
    assert status == 303
    assert [await index_status(o.client) for o in others] == [302, 302]
    assert await index_status(auth.client) == 200
    assert await AuthSession.all().count() == 1


async def test_password_change_ends_others_and_keeps_this_one(
    app: Quart, auth: AuthActions
) -> None:
    await auth.register()
    other = await logged_in(app)
    await ApiToken.create(user=await User.get(), name="cli", token_hash="0" * 64)
    status = await post_form(
        auth.client,
        "/account/password/",
        "/account/password/",
        current_password=PASSWORD,
        password=NEW_PASSWORD,
        password_confirm=NEW_PASSWORD,
    )
    assert status == 303
    assert await index_status(auth.client) == 200
    assert await index_status(other.client) == 302
    assert await ApiToken.all().count() == 0
    fresh = AuthActions(app.test_client())
    assert (await fresh.login(password=PASSWORD)).status_code == 401
    assert (await fresh.login(password=NEW_PASSWORD)).status_code in (302, 303)


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password!", NEW_PASSWORD, NEW_PASSWORD, "current password is not correct"),
        (PASSWORD, "password1", "password1", "too common"),
        (PASSWORD, "short", "short", "8 to 1024"),
        (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "do not match"),
    ],
)
async def test_password_change_refusals(
    app: Quart, auth: AuthActions, current: str, new: str, confirm: str, message: str
) -> None:
    await auth.register()
    other = await logged_in(app)
    body = await (await auth.client.get("/account/password/")).get_data(as_text=True)
    response = await auth.client.post(
        "/account/password/",
        form={
            "csrf_token": csrf_token(body),
            "current_password": current,
            "password": new,
            "password_confirm": confirm,
        },
    )
    page = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page
    assert PASSWORD not in page
    assert await index_status(other.client) == 200  # nothing ended


async def test_remembered_session_must_confirm_before_password_change(
    app: Quart, auth: AuthActions
) -> None:
    await auth.register()
    await auth.logout()
    await auth.login(remember=True)
    cookie = auth_cookie(auth.client)
    assert cookie is not None
    # The browser restarts: only the remember cookie survives, Quart's session cookie is gone.
    restored = app.test_client()
    restored.set_cookie("localhost", "quart_app_auth", cookie)
    assert await index_status(restored) == 200
    response = await restored.get("/account/password/")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/account/confirm/?next=%2Faccount%2Fpassword%2F"
    page = await (await restored.get(response.headers["Location"])).get_data(as_text=True)
    assert "please enter your password again" in page
    token = csrf_token(page)
    wrong = await restored.post(
        "/account/confirm/?next=%2Faccount%2Fpassword%2F",
        form={"csrf_token": token, "password": "not my password"},
    )
    assert wrong.status_code == 401
    right = await restored.post(
        "/account/confirm/?next=%2Faccount%2Fpassword%2F",
        form={"csrf_token": token, "password": PASSWORD},
    )
    assert right.headers["Location"] == "/account/password/"
    assert (await restored.get("/account/password/")).status_code == 200
    # The browser that logged in with the password was fresh all along.
    assert (await auth.client.get("/account/password/")).status_code == 200


async def test_expired_session_says_why(make_app: AppFactory) -> None:
    app = await make_app(SESSION_LIFETIME=1)
    auth = AuthActions(app.test_client())
    await auth.register()
    await asyncio.sleep(1.1)
    response = await auth.client.get("/index/")
    assert response.headers["Location"] == "/login/?next=%2Findex%2F"
    page = await (await auth.client.get("/login/")).get_data(as_text=True)
    assert "Your session has expired" in page


async def test_login_page_explains_the_live_logout_reason(client: Client) -> None:
    page = await (await client.get("/login/?reason=ended_elsewhere")).get_data(as_text=True)
    assert "ended from another device" in page
    page = await (await client.get("/login/?reason=<script>")).get_data(as_text=True)
    assert "<script>" not in page


async def test_socket_refused_without_a_session(client: Client) -> None:
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/ws/session") as socket:
            await socket.receive()
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://localhost:8000", "https://localhost", "null"]
)
async def test_socket_refuses_a_page_of_another_origin(auth: AuthActions, origin: str) -> None:
    """A page of another origin cannot read when and why the victim's session ends."""
    await auth.register()
    with pytest.raises(WebsocketResponseError) as refused:
        async with auth.client.websocket("/ws/session", headers={"Origin": origin}) as socket:
            await socket.receive()
    assert refused.value.response.status_code == 403


async def test_socket_accepts_its_own_origin(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    async with auth.client.websocket(
        "/ws/session", headers={"Origin": "http://localhost"}
    ) as socket:
        await asyncio.sleep(0.05)  # let the handler subscribe
        await auth.logout()
        message = await asyncio.wait_for(socket.receive(), timeout=5)
    assert json.loads(message)["event"] == "session_ended"


async def receive_event(client: Client, trigger: object) -> dict[str, str]:
    """Open the socket, run trigger, and return what the socket then says."""
    async with client.websocket("/ws/session") as socket:
        await asyncio.sleep(0.05)  # let the handler subscribe
        await trigger()  # type: ignore[operator]
        message = await asyncio.wait_for(socket.receive(), timeout=5)
    return json.loads(message)  # type: ignore[no-any-return]


async def test_socket_hears_logout_in_another_tab(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    tab = app.test_client()
    cookie = auth_cookie(auth.client)
    assert cookie is not None
    tab.set_cookie("localhost", "quart_app_auth", cookie)
    event = await receive_event(tab, auth.logout)
    assert event == {"event": "session_ended", "reason": "logout"}


async def test_socket_hears_the_session_ended_elsewhere(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    other = await logged_in(app)

    async def end_the_other() -> None:
        await post_form(auth.client, "/account/", "/account/sessions/end-others")

    event = await receive_event(other.client, end_the_other)
    assert event["reason"] == "ended_elsewhere"


async def test_socket_hears_a_password_change(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    other = await logged_in(app)

    async def change() -> None:
        await post_form(
            auth.client,
            "/account/password/",
            "/account/password/",
            current_password=PASSWORD,
            password=NEW_PASSWORD,
            password_confirm=NEW_PASSWORD,
        )

    event = await receive_event(other.client, change)
    assert event["reason"] == "password_changed"


async def test_socket_ends_with_the_session_by_itself(make_app: AppFactory) -> None:
    app = await make_app(SESSION_IDLE_TIMEOUT=1)
    auth = AuthActions(app.test_client())
    await auth.register()

    async def nothing() -> None:
        return None

    event = await receive_event(auth.client, nothing)  # no request is made meanwhile
    assert event["reason"] == "expired"
    assert await AuthSession.all().count() == 0


async def test_api_sessions(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    other = await logged_in(app)
    listing = await (await auth.client.get("/api/sessions")).get_json()
    assert [s["current"] for s in listing["sessions"]].count(True) == 1
    assert len(listing["sessions"]) == 2
    other_id = next(s["id"] for s in listing["sessions"] if not s["current"])
    assert (await auth.client.delete(f"/api/sessions/{other_id}")).status_code == 204
    assert (await auth.client.delete(f"/api/sessions/{other_id}")).status_code == 404
    assert await index_status(other.client) == 302
    third = await logged_in(app)
    response = await auth.client.post("/api/sessions/revoke-others")
    assert response.status_code == 200
    assert (await response.get_json()) == {"ended": 1}
    assert await index_status(third.client) == 302
    assert await index_status(auth.client) == 200


async def test_api_stale_session_cannot_end_sessions(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    await AuthSession.all().update(fresh=False)
    response = await auth.client.post("/api/sessions/revoke-others")
    assert response.status_code == 403
    assert (await response.get_json())["error"] == "reauthentication_required"
