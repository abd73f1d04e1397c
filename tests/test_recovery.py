"""Addresses, verification and password reset, end to end through a real SMTP server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import accounts, outbox
from quart_app.models import OutboxMail, RecoveryToken, User

from .conftest import PASSWORD, AppFactory, AuthActions, csrf_token
from .smtp_server import SmtpServer, html_of, link_in, smtp_fixture, text_of  # noqa: F401

NEW_PASSWORD = "a brand new passphrase 42"
EMAIL = "Alice@Example.com"


@pytest.fixture
async def mail_app(make_app: AppFactory, smtp: SmtpServer) -> Quart:
    # No background sender: each test sends what is due when it wants to.
    return await make_app(MAIL_URL=smtp.url, MAIL_POLL_INTERVAL=0, MAIL_RETRY_BASE=0)


async def send(app: Quart) -> int:
    async with app.app_context():
        return await outbox.send_due(app)


def path_of(link: str) -> str:
    return urlsplit(link).path


async def verified_user(app: Quart, client: Client, smtp: SmtpServer) -> None:
    """Register alice with an address through the form and open the verification link."""
    response = await AuthActions(client).register(email=EMAIL)
    assert response.status_code == 303
    await send(app)
    (mail,) = smtp.inbox.wait_for(EMAIL)
    response = await client.get(path_of(link_in(mail)))
    assert response.status_code == 302
    assert (await User.get(username="alice")).email_verified


async def forgot(client: Client, identifier: str, headers: dict[str, str] | None = None) -> Any:
    token = csrf_token(await (await client.get("/forgot-password/")).get_data(as_text=True))
    return await client.post(
        "/forgot-password/",
        form={"identifier": identifier, "csrf_token": token},
        headers=headers,
    )


async def test_reset_through_the_forms(mail_app: Quart, smtp: SmtpServer) -> None:
    client = mail_app.test_client()
    await verified_user(mail_app, client, smtp)
    other = mail_app.test_client()
    await AuthActions(other).login()
    assert (await other.get("/index/")).status_code == 200

    response = await forgot(mail_app.test_client(), "alice")
    assert response.status_code == 200
    await send(mail_app)
    mails = smtp.inbox.wait_for(EMAIL, 2)
    reset_mail = mails[1]
    assert reset_mail["Subject"] == "Reset your password"
    link = link_in(reset_mail)
    assert link.startswith("http://localhost:8000/reset-password/")
    assert link in html_of(reset_mail)

    browser = mail_app.test_client()
    response = await browser.get(path_of(link))
    assert response.status_code == 302
    assert response.headers["Location"] == "/reset-password/"  # the token left the address bar
    page = await browser.get("/reset-password/")
    form = {
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "csrf_token": csrf_token(await page.get_data(as_text=True)),
    }
    response = await browser.post("/reset-password/", form=form)
    assert response.status_code == 303
    assert response.headers["Location"] == "/login/"

    assert (await other.get("/index/")).status_code == 302  # every session ended
    assert (await AuthActions(browser).login(password=PASSWORD)).status_code == 401
    assert (await AuthActions(browser).login(password=NEW_PASSWORD)).status_code == 303
    await send(mail_app)
    notice = smtp.inbox.wait_for(EMAIL, 3)[2]
    assert notice["Subject"] == "Your password was reset"
    # Used once: the same link is refused now.
    assert (await mail_app.test_client().get(path_of(link))).status_code == 400


async def test_reset_through_the_api(mail_app: Quart, smtp: SmtpServer) -> None:
    client = mail_app.test_client()
    response = await client.post(
        "/api/register", json={"username": "bob", "password": PASSWORD, "email": "bob@example.org"}
    )
    assert response.status_code == 201
    await send(mail_app)
    (verify,) = smtp.inbox.wait_for("bob@example.org")
    assert (await client.get(path_of(link_in(verify)))).status_code == 302
    created = await client.post("/api/tokens", json={"name": "cli", "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {(await created.get_json())['token']}"}
    assert (await client.get("/api/me", headers=bearer)).status_code == 200

    answer = await mail_app.test_client().post(
        "/api/password-reset", json={"identifier": "BOB@example.org"}
    )
    assert answer.status_code == 202
    await send(mail_app)
    token = path_of(link_in(smtp.inbox.wait_for("bob@example.org", 2)[1])).rsplit("/", 1)[1]
    anonymous = mail_app.test_client()
    weak = await anonymous.post(
        "/api/password-reset/confirm", json={"token": token, "password": "password"}
    )
    assert weak.status_code == 422  # the ordinary rules, and the token still good
    done = await anonymous.post(
        "/api/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert done.status_code == 204
    assert (await client.get("/api/me", headers=bearer)).status_code == 401
    assert (await client.get("/api/me")).status_code == 401
    again = await anonymous.post(
        "/api/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD + "x"}
    )
    assert again.status_code == 400
    assert (await again.get_json())["error"] == "invalid_token"
    login = await anonymous.post("/api/login", json={"username": "bob", "password": NEW_PASSWORD})
    assert login.status_code == 200


@pytest.mark.parametrize(
    "identifier", ["alice", "nobody", "nobody@example.com", "ALICE@example.COM", "unverified"]
)
async def test_the_same_answer_for_any_name(
    mail_app: Quart, smtp: SmtpServer, identifier: str
) -> None:
    client = mail_app.test_client()
    await verified_user(mail_app, client, smtp)
    await AuthActions(mail_app.test_client()).register("unverified", email="u@example.com")
    reference = await forgot(mail_app.test_client(), "nobody")
    response = await forgot(mail_app.test_client(), identifier)
    assert response.status_code == reference.status_code == 200

    def body(text: str) -> str:
        return text.split('name="csrf_token"')[0]

    assert body(await response.get_data(as_text=True)) == body(
        await reference.get_data(as_text=True)
    )
    api = await mail_app.test_client().post("/api/password-reset", json={"identifier": identifier})
    api_reference = await mail_app.test_client().post(
        "/api/password-reset", json={"identifier": "nobody"}
    )
    assert api.status_code == api_reference.status_code == 202
    assert await api.get_data() == await api_reference.get_data()
    resets = await RecoveryToken.filter(purpose="reset").count()
    assert resets == (1 if identifier.lower() in ("alice", "alice@example.com") else 0)


async def test_a_poisoned_host_does_not_reach_the_link(mail_app: Quart, smtp: SmtpServer) -> None:
    await verified_user(mail_app, mail_app.test_client(), smtp)
    headers = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    await forgot(mail_app.test_client(), "alice", headers=headers)
    await send(mail_app)
    reset_mail = smtp.inbox.wait_for(EMAIL, 2)[1]
    assert "evil.example" not in reset_mail.as_string()
    assert link_in(reset_mail).startswith("http://localhost:8000/")


async def _reset_link(app: Quart, smtp: SmtpServer, count: int) -> str:
    await forgot(app.test_client(), "alice")
    await send(app)
    return path_of(link_in(smtp.inbox.wait_for(EMAIL, count)[count - 1]))


async def test_expired_superseded_forged_and_voided_links(
    mail_app: Quart, smtp: SmtpServer
) -> None:
    client = mail_app.test_client()
    await verified_user(mail_app, client, smtp)
    first = await _reset_link(mail_app, smtp, 2)
    second = await _reset_link(mail_app, smtp, 3)
    anonymous = mail_app.test_client()
    refused = await anonymous.get(first)
    assert refused.status_code == 400  # superseded
    assert "/forgot-password/" in await refused.get_data(as_text=True)
    assert (await anonymous.get("/reset-password/" + "A" * 43)).status_code == 400  # forged
    assert (await anonymous.get("/reset-password/x")).status_code == 400
    assert (await anonymous.get("/reset-password/")).status_code == 400  # nothing kept

    await RecoveryToken.filter(purpose="reset").update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert (await anonymous.get(second)).status_code == 400  # expired

    third = await _reset_link(mail_app, smtp, 4)
    page = await client.get("/account/password/")
    form = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "csrf_token": csrf_token(await page.get_data(as_text=True)),
    }
    assert (await client.post("/account/password/", form=form)).status_code == 303
    assert (await anonymous.get(third)).status_code == 400  # void after a password change
    assert (await User.get(username="alice")).password_hash != ""


async def test_a_link_opened_then_voided_changes_nothing(mail_app: Quart, smtp: SmtpServer) -> None:
    await verified_user(mail_app, mail_app.test_client(), smtp)
    link = await _reset_link(mail_app, smtp, 2)
    browser = mail_app.test_client()
    assert (await browser.get(link)).status_code == 302
    page = await browser.get("/reset-password/")
    token = csrf_token(await page.get_data(as_text=True))
    await _reset_link(mail_app, smtp, 3)  # a newer link voids the one opened
    before = (await User.get(username="alice")).password_hash
    form = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": token}
    response = await browser.post("/reset-password/", form=form)
    assert response.status_code == 400
    assert (await User.get(username="alice")).password_hash == before


async def test_the_mail_server_down_then_up(mail_app: Quart, smtp: SmtpServer) -> None:
    await verified_user(mail_app, mail_app.test_client(), smtp)
    smtp.stop()
    assert (await forgot(mail_app.test_client(), "alice")).status_code == 200
    assert await send(mail_app) == 1
    row = await OutboxMail.get(template="password_reset")
    assert row.status == "queued"
    assert row.attempts == 1
    assert row.last_error
    smtp.start()
    assert await send(mail_app) == 1
    assert await send(mail_app) == 0
    assert len(smtp.inbox.wait_for(EMAIL, 2)) == 2
    sent = await OutboxMail.get(id=row.id)
    assert (sent.status, sent.message) == ("sent", "")
    assert not sent.last_error


async def test_a_mail_is_given_up_with_its_error(make_app: AppFactory, smtp: SmtpServer) -> None:
    app = await make_app(
        MAIL_URL=smtp.url, MAIL_POLL_INTERVAL=0, MAIL_RETRY_BASE=0, MAIL_MAX_ATTEMPTS=2
    )
    await verified_user(app, app.test_client(), smtp)
    smtp.stop()
    await forgot(app.test_client(), "alice")
    assert await send(app) == 1
    assert await send(app) == 1
    assert await send(app) == 0
    row = await OutboxMail.get(template="password_reset")
    assert (row.status, row.attempts) == ("failed", 2)
    assert "Connect" in (row.last_error or "") or "refused" in (row.last_error or "").lower()


async def test_throttles(make_app: AppFactory, smtp: SmtpServer) -> None:
    app = await make_app(
        MAIL_URL=smtp.url,
        MAIL_POLL_INTERVAL=0,
        RATE_LIMITER_ENABLED=True,
        RATE_LIMIT_STORAGE="memory",
        PASSWORD_RESETS_PER_ADDRESS="4/hour",
        PASSWORD_RESETS_PER_ACCOUNT="2/hour",
    )
    await verified_user(app, app.test_client(), smtp)
    statuses = [(await forgot(app.test_client(), "alice")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    # The account's limit sends no more mails, and says nothing different.
    assert await OutboxMail.filter(template="password_reset").count() == 2
    response = await app.test_client().post("/api/password-reset", json={"identifier": "alice"})
    assert response.status_code == 429
    assert "Retry-After" in response.headers


async def test_a_reset_clears_the_login_throttle(make_app: AppFactory, smtp: SmtpServer) -> None:
    app = await make_app(
        MAIL_URL=smtp.url,
        MAIL_POLL_INTERVAL=0,
        RATE_LIMITER_ENABLED=True,
        RATE_LIMIT_STORAGE="memory",
        LOGIN_FAILURES_PER_ACCOUNT="2/hour",
    )
    await verified_user(app, app.test_client(), smtp)
    guesser = AuthActions(app.test_client())
    statuses = [(await guesser.login(password="wrong guess 123")).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    link = await _reset_link(app, smtp, 2)
    token = link.rsplit("/", 1)[1]
    response = await app.test_client().post(
        "/api/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert (await guesser.login(password=NEW_PASSWORD)).status_code == 303


async def test_bad_input(mail_app: Quart) -> None:
    client = mail_app.test_client()
    for body in ({}, {"identifier": 5}, {"identifier": "a\x00b"}, {"identifier": "x" * 5000}):
        response = await client.post("/api/password-reset", json=body)
        assert response.status_code in (400, 422), body
    for body in ({"token": "abc"}, {"token": "x" * 4000, "password": NEW_PASSWORD}):
        response = await client.post("/api/password-reset/confirm", json=body)
        assert response.status_code in (400, 422), body
    assert (await client.post("/forgot-password/", form={"identifier": "alice"})).status_code == 400
    assert await OutboxMail.all().count() == 0
    assert (await client.get("/verify-email/" + "B" * 43)).status_code == 400


@pytest.mark.parametrize(
    "email", ["no-at-sign", "a@b", "x" * 250 + "@example.com", "\ud800@example.com", "a@@b.c"]
)
async def test_bad_addresses_are_refused_and_nothing_is_created(
    mail_app: Quart, email: str
) -> None:
    response = await mail_app.test_client().post(
        "/api/register", json={"username": "zed", "password": PASSWORD, "email": email}
    )
    assert response.status_code in (400, 422)
    assert not await User.filter(username="zed").exists()
    assert await OutboxMail.all().count() == 0


async def test_one_link_used_twice_at_once_resets_once(mail_app: Quart, smtp: SmtpServer) -> None:
    client = mail_app.test_client()
    await verified_user(mail_app, client, smtp)
    answer = await client.post("/api/password-reset", json={"identifier": "alice"})
    assert answer.status_code == 202
    await send(mail_app)
    token = path_of(link_in(smtp.inbox.wait_for(EMAIL, 2)[1])).rsplit("/", 1)[1]

    async def confirm(password: str) -> int:
        response = await mail_app.test_client().post(
            "/api/password-reset/confirm", json={"token": token, "password": password}
        )
        return response.status_code

    first, second = NEW_PASSWORD, NEW_PASSWORD + " too"
    statuses = await asyncio.gather(confirm(first), confirm(second))
    assert sorted(statuses) == [204, 400]
    winner = first if statuses[0] == 204 else second
    async with mail_app.app_context():
        user = await User.get(username="alice")
        assert user.credential_generation == 1  # one password change, not two
        assert await accounts.authenticate("alice", winner, "127.0.0.1")
        # The notice of the change is queued once, with the change.
        notices = await OutboxMail.filter(template="password_reset_done").count()
        assert notices == 1
