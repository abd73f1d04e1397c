"""The Flask-Login layer: current_user, sessions that end on the server, protection, expiry."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from quart import Quart, render_template_string
from quart.typing import TestClientProtocol as Client

from quart_app.login import AnonymousUserMixin, current_user, login_fresh
from quart_app.models import AuthSession, User

from .conftest import AppFactory, AuthActions, auth_cookie, forget_copies

COOKIE = "quart_app_auth"


def replay(app: Quart, value: str) -> Client:
    """A new client (another browser, or an attacker) holding a copied cookie value."""
    client = app.test_client()
    client.set_cookie("localhost", COOKIE, value)
    return client


def signer(app: Quart) -> URLSafeTimedSerializer:
    """Quart-Auth's cookie serializer, as anyone holding the secret key could rebuild it."""
    return URLSafeTimedSerializer(
        app.config["SECRET_KEY"],
        "quart_app session key",
        signer_kwargs={"digest_method": hashlib.sha512},
    )


async def index_status(client: Client, user_agent: str | None = None) -> int:
    headers = {"User-Agent": user_agent} if user_agent else {}
    return (await client.get("/index/", headers=headers)).status_code


async def test_anonymous_current_user_is_a_plain_object(app: Quart) -> None:
    async with app.test_request_context("/"):
        await app.preprocess_request()
        assert current_user.is_authenticated is False
        assert current_user.is_anonymous is True
        assert current_user.is_active is False
        assert current_user.get_id() is None
        assert isinstance(current_user._get_current_object(), AnonymousUserMixin)
        rendered = await render_template_string(
            "{% if current_user.is_authenticated %}in{% else %}out{% endif %}"
        )
        assert rendered == "out"


async def test_current_user_is_the_tortoise_user(app: Quart, auth: AuthActions) -> None:
    await auth.register("Alice")
    cookie = auth_cookie(auth.client)
    assert cookie is not None

    @app.get("/whoami")
    async def whoami() -> str:
        assert isinstance(current_user._get_current_object(), User)
        return f"{current_user.username}:{current_user.id}:{current_user.is_authenticated}"

    response = await auth.client.get("/whoami")
    user = await User.get(username="Alice")
    assert await response.get_data(as_text=True) == f"Alice:{user.id}:True"


async def queries_of(client: Client, caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    """The SQL statements the app sent while answering one GET."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
        response = await client.get(path)
    assert response.status_code == 200
    return [r.getMessage() for r in caplog.records if r.name == "tortoise.db_client"]


async def test_one_query_per_authenticated_request(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app(SESSION_CACHE_SIZE=0)
    client = app.test_client()
    await AuthActions(client).register()
    for _ in range(2):
        queries = await queries_of(client, caplog, "/index/")
        assert len(queries) == 1, queries
        assert "sessions" in queries[0]
        assert "users" in queries[0]


async def test_a_worker_reads_a_session_it_served_lately_from_memory(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app(SESSION_CACHE_SIZE=100)
    client = app.test_client()
    await AuthActions(client).register()
    first = await queries_of(client, caplog, "/index/")
    assert len(first) == 1, first
    assert "sessions" in first[0]
    assert await queries_of(client, caplog, "/index/") == []
    assert await queries_of(client, caplog, "/index/") == []


async def test_replayed_cookie_after_logout_is_refused(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    cookie = auth_cookie(auth.client)
    assert cookie is not None
    assert await index_status(replay(app, cookie)) == 200
    await auth.logout()
    assert auth_cookie(auth.client) is None
    assert await index_status(replay(app, cookie)) == 302
    assert await AuthSession.all().count() == 0


async def test_logout_ends_only_that_session(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    other = AuthActions(app.test_client())
    await other.login()
    await auth.logout()
    assert await index_status(other.client) == 200
    assert await AuthSession.all().count() == 1


async def test_cookie_is_opaque_and_the_table_holds_only_its_hash(
    app: Quart, auth: AuthActions
) -> None:
    await auth.register("Alice")
    cookie = auth_cookie(auth.client)
    assert cookie is not None
    key = URLSafeTimedSerializer(
        app.config["SECRET_KEY"],
        "quart_app session key",
        signer_kwargs={"digest_method": hashlib.sha512},
    ).loads(cookie)
    user = await User.get(username="Alice")
    assert "Alice" not in cookie
    assert "alice" not in key.lower()
    assert key != str(user.id)
    assert len(key) >= 40
    row = await AuthSession.get(user_id=user.id)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {row.key_hash, row.fingerprint}
    # Someone with a copy of the table (and even the secret) cannot turn the hash into a login.
    forged = URLSafeTimedSerializer(
        app.config["SECRET_KEY"],
        "quart_app session key",
        signer_kwargs={"digest_method": hashlib.sha512},
    ).dumps(row.key_hash)
    assert await index_status(replay(app, forged)) == 302


async def test_cookie_attributes(client: Client, auth: AuthActions) -> None:
    response = await auth.register()
    set_cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE))
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert not any(a.startswith(("max-age", "expires")) for a in attributes)  # ends with browser


async def test_remember_gives_a_thirty_day_cookie(client: Client, auth: AuthActions) -> None:
    await auth.register()
    await auth.logout()
    response = await auth.login(remember=True)
    set_cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE))
    assert f"Max-Age={30 * 24 * 3600}" in set_cookie
    row = await AuthSession.get()
    assert row.remember is True
    lifetime = row.expires_at - row.created_at
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)


async def test_session_fixation_planted_cookie_is_never_adopted(
    app: Quart, auth: AuthActions
) -> None:
    await auth.register()
    await auth.logout()
    planted = URLSafeTimedSerializer(
        app.config["SECRET_KEY"],
        "quart_app session key",
        signer_kwargs={"digest_method": hashlib.sha512},
    ).dumps("attacker-chosen-session-key")
    auth.client.set_cookie("localhost", COOKIE, planted)
    await auth.login()
    issued = auth_cookie(auth.client)
    assert issued is not None
    assert issued != planted
    assert await index_status(replay(app, planted)) == 302
    assert await index_status(auth.client) == 200


async def test_login_again_rotates_the_session(app: Quart, auth: AuthActions) -> None:
    await auth.register()
    first = auth_cookie(auth.client)
    assert first is not None
    # The login page sends a logged-in user away; log in again through a second form post.
    second_client = AuthActions(app.test_client())
    await second_client.login()
    second = auth_cookie(second_client.client)
    assert second is not None
    assert second != first
    assert await AuthSession.all().count() == 2


@pytest.mark.parametrize(
    ("mode", "after_change", "fresh_after"),
    [("strong", 302, None), ("basic", 200, False), (None, 200, True)],
)
async def test_session_protection(
    make_app: AppFactory, mode: str | None, after_change: int, fresh_after: bool | None
) -> None:
    app = await make_app(SESSION_PROTECTION=mode)
    client = app.test_client()
    auth = AuthActions(client)
    await auth.register(headers={"User-Agent": "browser-one"})
    assert await index_status(client, "browser-one") == 200
    assert await index_status(client, "stolen-elsewhere") == after_change
    if mode == "strong":
        # The session is over for everyone, including the original browser.
        assert await index_status(client, "browser-one") == 302
        assert await AuthSession.all().count() == 0
        return
    assert await index_status(client, "browser-one") == 200
    row = await AuthSession.get()
    assert row.fresh is fresh_after


async def test_login_fresh_after_password_login(app: Quart, auth: AuthActions) -> None:
    await auth.register()

    @app.get("/fresh")
    async def fresh() -> str:
        return str(login_fresh())

    assert await (await auth.client.get("/fresh")).get_data(as_text=True) == "True"
    await AuthSession.all().update(fresh=False)
    forget_copies(app)
    assert await (await auth.client.get("/fresh")).get_data(as_text=True) == "False"


async def test_session_ends_after_its_lifetime(make_app: AppFactory) -> None:
    app = await make_app(SESSION_LIFETIME=1, SESSION_IDLE_TIMEOUT=3600)
    auth = AuthActions(app.test_client())
    await auth.register()
    assert await index_status(auth.client) == 200
    await asyncio.sleep(1.1)
    assert await index_status(auth.client) == 302
    assert await AuthSession.all().count() == 0


async def test_idle_session_ends_unless_remembered(make_app: AppFactory) -> None:
    app = await make_app(SESSION_IDLE_TIMEOUT=1, SESSION_TOUCH_INTERVAL=0)
    plain = AuthActions(app.test_client())
    await plain.register()
    remembered = AuthActions(app.test_client())
    await remembered.login(remember=True)
    for _ in range(3):  # activity keeps both alive past the idle timeout
        await asyncio.sleep(0.5)
        assert await index_status(plain.client) == 200
        assert await index_status(remembered.client) == 200
    await asyncio.sleep(1.1)
    assert await index_status(plain.client) == 302
    assert await index_status(remembered.client) == 200


async def test_default_timeouts_are_enforced_by_the_server(
    app: Quart, client: Client, auth: AuthActions
) -> None:
    await auth.register()
    now = datetime.now(UTC)
    # Two hours and a minute without a request: the non-remembered session is over.
    await AuthSession.all().update(last_seen_at=now - timedelta(hours=2, minutes=1))
    forget_copies(app)
    assert await index_status(client) == 302

    await auth.login(remember=True)
    await AuthSession.all().update(last_seen_at=now - timedelta(days=3))
    forget_copies(app)
    assert await index_status(client) == 200
    await AuthSession.all().update(expires_at=now - timedelta(seconds=1))
    forget_copies(app)
    assert await index_status(client) == 302


async def test_non_remembered_session_lasts_at_most_twelve_hours(
    client: Client, auth: AuthActions
) -> None:
    await auth.register()
    row = await AuthSession.get()
    assert row.remember is False
    assert row.expires_at - row.created_at <= timedelta(hours=12)


async def test_disabled_user_is_logged_out(client: Client, auth: AuthActions) -> None:
    await auth.register()
    await User.all().update(is_active=False)
    assert await index_status(client) == 302
    response = await auth.login()
    assert response.status_code == 401


async def test_session_records_the_client(client: Client, auth: AuthActions) -> None:
    await auth.register(headers={"User-Agent": "Mozilla/5.0 test"})
    row = await AuthSession.get()
    assert row.user_agent == "Mozilla/5.0 test"
    assert row.ip == "<local>"  # Quart's test client has no socket address
    assert row.fingerprint == hashlib.sha512(b"<local>|Mozilla/5.0 test").hexdigest()
