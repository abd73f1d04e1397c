"""TOTP and recovery codes: turning them on and off, the second login step, replay, limits."""

from __future__ import annotations

import html
import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import accounts, outbox, two_factor
from quart_app.models import OutboxMail, PendingLogin, RecoveryCode, TotpSecret, User

from .conftest import PASSWORD, AppFactory, AuthActions, csrf_token
from .smtp_server import SmtpServer, html_of, smtp_fixture, text_of  # noqa: F401
from .test_recovery import EMAIL, verified_user

SECRET = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')
URI = re.compile(r'<code class="uri">([^<]+)</code>')
CODES = re.compile(r"<li><code>([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})</code></li>")
PENDING_COOKIE = "quart_app_pending"


def settled_step() -> int:
    """The current 30-second step, waiting first if it is about to end.

    The tests use the codes of this step and the ones either side: that leaves every test
    at least 25 s before the window moves.
    """
    if time.time() % 30 > 25:
        time.sleep(30 - time.time() % 30 + 0.1)
    return int(time.time()) // 30


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * 30)


async def post_form(client: Client, page: str, action: str, **fields: str) -> tuple[int, str]:
    """Post a form of page with its CSRF token; the status and the body (or Location)."""
    body = await (await client.get(page)).get_data(as_text=True)
    response = await client.post(action, form={"csrf_token": csrf_token(body), **fields})
    text = await response.get_data(as_text=True)
    return response.status_code, response.headers.get("Location", text)


async def enable_totp(auth: AuthActions, step: int | None = None) -> tuple[str, list[str]]:
    """Turn TOTP on through the pages, as a person would; the secret shown and the codes."""
    client = auth.client
    status, _ = await post_form(
        client, "/account/two-factor/", "/account/two-factor/start", password=PASSWORD
    )
    assert status == 303
    page = await (await client.get("/account/two-factor/")).get_data(as_text=True)
    match = SECRET.search(page)
    assert match, page
    secret = match.group(1)
    step = settled_step() - 1 if step is None else step
    status, body = await post_form(
        client, "/account/two-factor/", "/account/two-factor/confirm", code=code_at(secret, step)
    )
    assert status == 200, body
    codes = CODES.findall(body)
    assert len(codes) == 10
    return secret, codes


async def second_step(client: Client, code: str) -> tuple[int, str]:
    return await post_form(client, "/login/two-factor/", "/login/two-factor/", code=code)


async def is_logged_in(client: Client) -> bool:
    return (await client.get("/api/me")).status_code == 200


@pytest.fixture
async def enabled(auth: AuthActions) -> tuple[str, list[str]]:
    """alice, with TOTP on (confirmed with the code of the step before this one), logged out."""
    await auth.register()
    found = await enable_totp(auth)
    await auth.logout()
    return found


async def test_enrolment_page_shows_qr_secret_and_uri(auth: AuthActions) -> None:
    await auth.register()
    await post_form(
        auth.client, "/account/two-factor/", "/account/two-factor/start", password=PASSWORD
    )
    response = await auth.client.get("/account/two-factor/")
    page = await response.get_data(as_text=True)
    secret = SECRET.search(page)
    uri = URI.search(page)
    assert secret
    assert uri
    assert html.unescape(uri.group(1)) == pyotp.TOTP(secret.group(1)).provisioning_uri(
        name="alice", issuer_name="quart_app"
    )
    assert 'src="data:image/svg+xml' in page  # made on the server, no network
    assert "<script>" not in page
    # Not on until a code confirms it.
    row = await TotpSecret.get(user__username="alice")
    assert row.confirmed_at is None
    assert await two_factor.methods(await User.get(username="alice")) == []


async def test_start_asks_for_the_password(auth: AuthActions) -> None:
    await auth.register()
    status, location = await post_form(
        auth.client, "/account/two-factor/", "/account/two-factor/start", password="wrong one!"
    )
    assert (status, location) == (303, "/account/two-factor/")
    assert not await TotpSecret.exists()


async def test_a_wrong_first_code_does_not_turn_it_on(auth: AuthActions) -> None:
    await auth.register()
    await post_form(
        auth.client, "/account/two-factor/", "/account/two-factor/start", password=PASSWORD
    )
    page = await (await auth.client.get("/account/two-factor/")).get_data(as_text=True)
    match = SECRET.search(page)
    assert match
    wrong = code_at(match.group(1), settled_step() + 5)
    status, _ = await post_form(
        auth.client, "/account/two-factor/", "/account/two-factor/confirm", code=wrong
    )
    assert status == 303
    assert not await TotpSecret.exists(confirmed_at__isnull=False)


async def test_secret_and_codes_are_not_stored_in_the_clear(
    app: Quart, enabled: tuple[str, list[str]]
) -> None:
    secret, codes = enabled
    row = await TotpSecret.get()
    assert secret not in row.secret
    stored = {r.code_hash for r in await RecoveryCode.all()}
    assert len(stored) == 10
    for code in codes:
        assert code not in stored
        assert code.replace("-", "") not in stored


async def test_password_then_code_logs_in(
    app: Quart, auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    secret, _ = enabled
    step = settled_step()
    response = await auth.login(remember=True, next="/account/")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login/two-factor/"
    # The password alone: nobody is logged in.
    assert not await is_logged_in(auth.client)
    assert (await auth.client.get("/index/")).status_code == 302
    status, location = await second_step(auth.client, code_at(secret, step))
    assert (status, location) == (303, "/account/")
    assert await is_logged_in(auth.client)
    assert not await PendingLogin.exists()
    jar = auth.client.cookie_jar
    assert jar is not None
    auth_cookie = next(c for c in jar if c.name == "quart_app_auth")
    assert auth_cookie.expires is not None  # remember came through the second step
    assert all(c.name != PENDING_COOKIE for c in jar)


async def test_a_code_is_accepted_once(app: Quart, enabled: tuple[str, list[str]]) -> None:
    secret, _ = enabled
    step = settled_step()
    first = AuthActions(app.test_client())
    await first.login()
    assert (await second_step(first.client, code_at(secret, step)))[0] == 303
    second = AuthActions(app.test_client())
    await second.login()
    status, body = await second_step(second.client, code_at(secret, step))
    assert status == 401
    assert "That code is not correct." in body
    assert not await is_logged_in(second.client)
    # The step before is refused too: the accepted step moved past it.
    assert (await second_step(second.client, code_at(secret, step - 1)))[0] == 401
    assert (await second_step(second.client, code_at(secret, step + 1)))[0] == 303


async def test_the_confirming_code_cannot_log_in(
    auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    secret, _ = enabled
    step = settled_step()
    await auth.login()
    assert (await second_step(auth.client, code_at(secret, step - 1)))[0] == 401


async def test_a_code_far_from_now_is_refused(
    auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    secret, _ = enabled
    step = settled_step()
    await auth.login()
    assert (await second_step(auth.client, code_at(secret, step + 2)))[0] == 401
    assert (await second_step(auth.client, code_at(secret, step - 3)))[0] == 401


async def test_recovery_code_logs_in_once(
    app: Quart, auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    _, codes = enabled
    await auth.login()
    # Typed in lower case with spaces: still the code.
    typed = codes[3].lower().replace("-", " ")
    assert (await second_step(auth.client, typed))[0] == 303
    assert await is_logged_in(auth.client)
    other = AuthActions(app.test_client())
    await other.login()
    assert (await second_step(other.client, codes[3]))[0] == 401
    assert (await second_step(other.client, codes[4]))[0] == 303
    assert await RecoveryCode.filter(used_at__isnull=True).count() == 8


async def test_five_wrong_codes_end_the_pending_login(
    auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    secret, _ = enabled
    step = settled_step()
    await auth.login()
    for _ in range(4):
        assert (await second_step(auth.client, "000000"))[0] == 401
    status, location = await second_step(auth.client, "000000")
    assert (status, location) == (303, "/login/")
    assert not await PendingLogin.exists()
    # The right code is too late now: the password must be entered again.
    response = await auth.client.get("/login/two-factor/")
    assert response.headers["Location"] == "/login/"
    assert not await is_logged_in(auth.client)
    await auth.login()
    assert (await second_step(auth.client, code_at(secret, step)))[0] == 303


async def test_the_pending_login_expires(auth: AuthActions, enabled: tuple[str, list[str]]) -> None:
    secret, _ = enabled
    step = settled_step()
    await auth.login()
    row = await PendingLogin.get()
    assert row.expires_at - datetime.now(UTC) <= timedelta(minutes=5)
    assert row.expires_at - datetime.now(UTC) > timedelta(minutes=4)
    await PendingLogin.filter(id=row.id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    body = await (await auth.client.get("/login/")).get_data(as_text=True)
    response = await auth.client.post(
        "/login/two-factor/", form={"csrf_token": csrf_token(body), "code": code_at(secret, step)}
    )
    assert response.headers["Location"] == "/login/"
    assert not await is_logged_in(auth.client)
    assert not await PendingLogin.exists()


async def test_a_password_change_ends_the_pending_login(
    app: Quart, auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    secret, _ = enabled
    step = settled_step()
    await auth.login()
    async with app.app_context():
        await accounts.set_password(await User.get(), "another good passphrase", "password_reset")
    code = code_at(secret, step)
    assert await post_form(auth.client, "/login/", "/login/two-factor/", code=code) == (
        303,
        "/login/",
    )
    assert not await is_logged_in(auth.client)


async def test_second_step_is_throttled(make_app: AppFactory) -> None:
    app = await make_app(
        RATE_LIMITER_ENABLED=True,
        RATE_LIMIT_STORAGE="memory",
        LOGIN_FAILURES_PER_ACCOUNT="3/15 minutes",
    )
    auth = AuthActions(app.test_client())
    await auth.register()
    secret, _ = await enable_totp(auth)
    await auth.logout()
    step = settled_step()
    await auth.login()
    for _ in range(3):
        assert (await second_step(auth.client, "000000"))[0] == 401
    status, _ = await second_step(auth.client, code_at(secret, step))
    assert status == 429
    assert not await is_logged_in(auth.client)


async def test_api_login_asks_for_the_second_factor(
    app: Quart, enabled: tuple[str, list[str]]
) -> None:
    secret, _ = enabled
    step = settled_step()
    client = app.test_client()
    response = await client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert await response.get_json() == {
        "mfa_required": True,
        "methods": ["totp", "recovery_code"],
    }
    assert (await client.get("/api/me")).status_code == 401
    wrong = await client.post("/api/login/two-factor", json={"code": "123"})
    assert wrong.status_code == 401
    assert (await wrong.get_json())["error"] == "invalid_code"
    right = await client.post("/api/login/two-factor", json={"code": code_at(secret, step)})
    assert right.status_code == 200
    assert (await right.get_json())["username"] == "alice"
    assert (await client.get("/api/me")).status_code == 200


async def test_api_second_step_without_a_pending_login(client: Client) -> None:
    response = await client.post("/api/login/two-factor", json={"code": "123456"})
    assert response.status_code == 401
    assert (await response.get_json())["error"] == "no_pending_login"


async def test_api_turns_totp_on_and_off(app: Quart) -> None:
    client = app.test_client()
    await client.post("/api/register", json={"username": "bob", "password": PASSWORD})
    assert (await client.post("/api/two-factor/totp", json={"password": "nope"})).status_code == 403
    started = await (
        await client.post("/api/two-factor/totp", json={"password": PASSWORD})
    ).get_json()
    assert started["uri"].startswith("otpauth://totp/quart_app:bob?secret=")
    step = settled_step()
    confirmed = await client.post(
        "/api/two-factor/totp/confirm", json={"code": code_at(started["secret"], step - 1)}
    )
    codes = (await confirmed.get_json())["recovery_codes"]
    assert len(codes) == 10
    status = await (await client.get("/api/two-factor")).get_json()
    assert status == {"enabled": True, "recovery_codes_left": 10, "passkeys": 0}
    again = await client.post("/api/two-factor/totp", json={"password": PASSWORD})
    assert again.status_code == 409
    new = await client.post(
        "/api/two-factor/recovery-codes",
        json={"password": PASSWORD, "code": code_at(started["secret"], step)},
    )
    new_codes = (await new.get_json())["recovery_codes"]
    assert set(new_codes).isdisjoint(codes)
    # Turning off needs the password and a code: an old recovery code no longer counts.
    refused = await client.post(
        "/api/two-factor/disable", json={"password": PASSWORD, "code": codes[0]}
    )
    assert refused.status_code == 401
    wrong_password = await client.post(
        "/api/two-factor/disable", json={"password": "not it at all", "code": new_codes[0]}
    )
    assert wrong_password.status_code == 403
    off = await client.post(
        "/api/two-factor/disable", json={"password": PASSWORD, "code": new_codes[1]}
    )
    assert off.status_code == 204
    assert not await TotpSecret.exists()
    assert not await RecoveryCode.exists()


async def test_disable_from_the_page(
    app: Quart, auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    _, codes = enabled
    await auth.login()
    await second_step(auth.client, codes[0])
    page, action = "/account/two-factor/", "/account/two-factor/disable"
    fields = {"off-password": "wrong password!", "off-code": codes[1]}
    body = await (await auth.client.get(page)).get_data(as_text=True)
    token = re.search(r'name="off-csrf_token" type="hidden" value="([^"]+)"', body)
    assert token
    response = await auth.client.post(action, form={"off-csrf_token": token.group(1), **fields})
    assert response.status_code == 303
    assert await TotpSecret.exists()
    fields["off-password"] = PASSWORD
    response = await auth.client.post(action, form={"off-csrf_token": token.group(1), **fields})
    assert response.status_code == 303
    assert not await TotpSecret.exists()
    await auth.logout()
    response = await auth.login()
    assert response.headers["Location"] == "/index/"


async def test_secret_written_under_an_old_key_is_read_and_reencrypted(
    make_app: AppFactory,
) -> None:
    old_key = "an-older-secret-key-that-is-long-enough-987654"
    app = await make_app()
    async with app.app_context():
        user = await User.create(username="carol", username_key="carol", password_hash="x")
        app.config["SECRET_KEY"] = old_key
        secret = pyotp.random_base32()
        await TotpSecret.create(
            user_id=user.id, secret=two_factor.encrypt(secret), confirmed_at=datetime.now(UTC)
        )
        app.config["SECRET_KEY"] = "the-new-secret-key-that-is-long-enough-123456"
        step = settled_step()
        with pytest.raises(two_factor.UnreadableSecret):
            await two_factor.check_code(user, code_at(secret, step), "127.0.0.1")
        app.config["SECRET_KEY_FALLBACKS"] = [old_key]
        assert await two_factor.check_code(user, code_at(secret, step), "127.0.0.1") == "totp"
        row = await TotpSecret.get(user_id=user.id)
        app.config["SECRET_KEY_FALLBACKS"] = []
        assert two_factor.decrypt(row.secret) == (secret, False)


async def test_codes_of_other_shapes_are_refused(
    auth: AuthActions, enabled: tuple[str, list[str]]
) -> None:
    await auth.login()
    for code in ["", "12345", "1234567", "ü" * 6, "x" * 5000, "\x00" * 6]:
        status, _ = await second_step(auth.client, code)
        assert status in (400, 401), code
    assert not await is_logged_in(auth.client)


async def test_a_used_code_and_a_wrong_one_take_the_same_path(
    app: Quart, enabled: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The same statements run for both, so the time taken does not tell them apart."""
    secret, codes = enabled
    step = settled_step()
    first = AuthActions(app.test_client())
    await first.login()
    await second_step(first.client, code_at(secret, step))
    user = await User.get()

    async def statements(code: str) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
            async with app.app_context():
                assert await two_factor.check_code(user, code, "127.0.0.1") is None
        return [r.getMessage().split(":")[0] for r in caplog.records]

    used = await statements(code_at(secret, step))
    wrong = await statements(code_at(secret, step + 7))
    assert used
    assert used == wrong
    async with app.app_context():
        assert await two_factor.check_code(user, codes[1], "127.0.0.1") == "recovery_code"
    used = await statements(codes[1])
    wrong = await statements("AAAA-BBBB-CCCC-DDDD")
    assert used
    assert used == wrong


async def test_sign_in_events_are_mailed_to_a_verified_address(
    make_app: AppFactory, smtp: SmtpServer
) -> None:
    app = await make_app(MAIL_URL=smtp.url, MAIL_POLL_INTERVAL=0, MAIL_RETRY_BASE=0)
    client = app.test_client()
    await verified_user(app, client, smtp)  # one mail: the verification link
    await enable_totp(AuthActions(client))
    async with app.test_request_context("/"):
        user = await User.get(username="alice")
        await two_factor.notify(user, "passkey_added", name="<b>phone</b>")
    async with app.app_context():
        assert await outbox.send_due(app) == 2
    _, enabled, added = smtp.inbox.wait_for(EMAIL, count=3)
    assert "Two-factor sign-in was turned on for your account." in text_of(enabled)
    assert enabled["Subject"] == "A change to how you sign in"
    assert "A passkey named “<b>phone</b>” was added" in text_of(added)
    assert "A passkey named “&lt;b&gt;phone&lt;/b&gt;” was added" in html_of(added)


async def test_sign_in_events_mail_nobody_without_a_verified_address(
    make_app: AppFactory, smtp: SmtpServer
) -> None:
    app = await make_app(MAIL_URL=smtp.url, MAIL_POLL_INTERVAL=0, MAIL_RETRY_BASE=0)
    client = app.test_client()
    assert (await AuthActions(client).register(email="bob@example.com")).status_code == 303
    await enable_totp(AuthActions(client))
    async with app.app_context():
        # The verification link only: the event waits for a verified address.
        assert [mail.template for mail in await OutboxMail.all()] == ["verify_email"]
