"""/account/email/: add, change, remove an address; the notice to the old one; its language."""

from __future__ import annotations

from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import outbox
from quart_app.models import OutboxMail, User

from .conftest import PASSWORD, AppFactory, AuthActions, csrf_token
from .smtp_server import SmtpServer, link_in, smtp_fixture, text_of  # noqa: F401
from .test_recovery import path_of, send, verified_user


async def set_email(client: Client, email: str, password: str = PASSWORD) -> tuple[int, str]:
    token = csrf_token(await (await client.get("/account/email/")).get_data(as_text=True))
    response = await client.post(
        "/account/email/", form={"email": email, "password": password, "csrf_token": token}
    )
    return response.status_code, await response.get_data(as_text=True)


async def mail_app_of(make_app: AppFactory, smtp: SmtpServer) -> Quart:
    return await make_app(MAIL_URL=smtp.url, MAIL_POLL_INTERVAL=0)


async def test_change_tells_the_old_address(make_app: AppFactory, smtp: SmtpServer) -> None:
    app = await mail_app_of(make_app, smtp)
    client = app.test_client()
    await verified_user(app, client, smtp)
    assert (await set_email(client, "new@example.com", "wrong password 1"))[0] == 401
    assert (await User.get(username="alice")).email == "Alice@example.com"
    assert (await set_email(client, "not an address"))[0] == 400
    status, _ = await set_email(client, "new@example.com")
    assert status == 303
    user = await User.get(username="alice")
    assert (user.email, user.email_verified) == ("new@example.com", False)
    await send(app)
    (notice,) = [m for m in smtp.inbox.to("alice@example.com") if "changed" in m["Subject"]]
    assert "new@example.com" in text_of(notice)
    (verify,) = smtp.inbox.wait_for("new@example.com")
    assert (await client.get(path_of(link_in(verify)))).status_code == 302
    assert (await User.get(username="alice")).email_verified
    assert (await set_email(client, ""))[0] == 303
    assert (await User.get(username="alice")).email is None


async def test_addresses_are_unique_regardless_of_case(app: Quart) -> None:
    assert (
        await AuthActions(app.test_client()).register(email="Bo@Example.com")
    ).status_code == 303
    second = await AuthActions(app.test_client()).register("carol", email="bo@example.COM")
    assert second.status_code == 400
    assert "already used" in await second.get_data(as_text=True)
    assert not await User.filter(username="carol").exists()
    api = await app.test_client().post(
        "/api/register", json={"username": "dave", "password": PASSWORD, "email": "BO@example.com"}
    )
    assert api.status_code == 409
    assert (await api.get_json())["error"] == "email_taken"


async def test_mails_are_in_the_users_language(make_app: AppFactory, smtp: SmtpServer) -> None:
    app = await mail_app_of(make_app, smtp)
    client = app.test_client()
    await client.get("/language/zh")
    response = await AuthActions(client).register(email="li@example.com")
    assert response.status_code == 303
    await send(app)
    (verify,) = smtp.inbox.wait_for("li@example.com")
    assert verify["Subject"] == "确认你的电子邮件地址"
    assert "你好" in text_of(verify)


async def test_queue_to_user_needs_a_verified_address(app: Quart) -> None:
    await AuthActions(app.test_client()).register(email="eve@example.com")
    user = await User.get(username="alice")
    async with app.test_request_context("/"):
        assert await outbox.queue_to_user(user, "password_reset_done") is None
        user.email_verified = True
        row = await outbox.queue_to_user(user, "password_reset_done")
    assert row is not None
    assert (await OutboxMail.get(id=row.id)).recipient == "eve@example.com"
