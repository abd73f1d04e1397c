"""The session owner: the per-user cap, credential generations, ends by query, purge, pages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from quart import Quart
from quart.typing import TestClientProtocol as Client
from tortoise.connection import get_connection

from quart_app import accounts, sessions, tokens
from quart_app.models import ApiToken, AuthSession, User

from .conftest import PASSWORD, USE_POSTGRES, AppFactory, AuthActions, forget_copies
from .test_login import index_status

NEW_PASSWORD = "purple tangerine bicycle orbit"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


async def logged_in(app: Quart, username: str = "alice", **headers: str) -> Client:
    client = app.test_client()
    body = {"username": username, "password": PASSWORD}
    response = await client.post("/api/login", json=body, headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return client


async def test_a_login_past_the_cap_ends_the_least_recently_used(make_app: AppFactory) -> None:
    app = await make_app(SESSION_MAX_PER_USER=2)
    await AuthActions(app.test_client()).register()
    oldest, middle = await logged_in(app), await logged_in(app)
    assert await index_status(middle) == 200  # used since: now more recent than the first
    newest = await logged_in(app)
    assert await AuthSession.all().count() == 2
    assert await index_status(oldest) == 302
    assert await index_status(middle) == 200
    assert await index_status(newest) == 200


async def test_the_device_is_read_at_login_and_the_list_does_not_parse(app: Quart) -> None:
    await AuthActions(app.test_client()).register()
    client = await logged_in(app, **{"User-Agent": FIREFOX})
    row = await AuthSession.filter(user_agent=FIREFOX).get()
    assert row.device == "Firefox 128\tWindows"
    await AuthSession.filter(id=row.id).update(user_agent="changed after login")
    forget_copies(app)
    listing = await (await client.get("/api/sessions", headers={"User-Agent": FIREFOX})).get_json()
    assert [s["device"] for s in listing["sessions"] if s["current"]] == ["Firefox 128 on Windows"]


async def test_the_session_list_comes_in_pages(make_app: AppFactory) -> None:
    app = await make_app(SESSION_MAX_PER_USER=0)
    client = app.test_client()
    await AuthActions(client).register()
    user = await User.get()
    now = datetime.now(UTC)
    await AuthSession.bulk_create(
        AuthSession(
            key_hash=f"{n:064x}",
            user_id=user.id,
            created_at=now,
            last_seen_at=now - timedelta(seconds=n + 1),
            expires_at=now + timedelta(hours=1),
            fingerprint="x",
            ip="127.0.0.1",
            user_agent="",
        )
        for n in range(119)
    )
    pages = []
    for number in (1, 2, 3):
        body = await (await client.get(f"/api/sessions?page={number}")).get_json()
        pages.append((len(body["sessions"]), body["next_page"]))
    assert pages == [(50, 2), (50, 3), (20, None)]
    assert (await client.get("/api/sessions?page=0")).status_code == 404
    account = await (await client.get("/account/?page=3")).get_data(as_text=True)
    assert account.count('<li class="session') == 20
    assert 'href="/account/?page=2"' in account
    assert "page=4" not in account


async def test_a_login_that_checked_the_old_password_makes_a_dead_session(app: Quart) -> None:
    """The race of a login against a password change, in its worst order, made certain."""
    owner = app.test_client()
    await AuthActions(owner).register()
    stale = await User.get()  # the attacker's login read the user, and the old hash, here
    user = await User.get()
    async with app.app_context():
        await accounts.set_password(user, NEW_PASSWORD, "password_changed")
    async with app.test_request_context("/", method="POST"):
        key, session = await sessions.start(
            stale,
            remember=False,
            fresh=True,
            client=sessions.Client("<local>", ""),
            device="",
        )
        resolved = await sessions.resolve(
            key, sessions.Client("<local>", ""), protection=None, logged_in_here=lambda: True
        )
    assert resolved.session is None
    assert resolved.ended == "password_changed"
    assert not await AuthSession.filter(id=session.id).exists()


async def test_a_token_made_under_the_old_password_is_dead(app: Quart) -> None:
    await AuthActions(app.test_client()).register()
    stale = await User.get()
    user = await User.get()
    async with app.app_context():
        await accounts.set_password(user, NEW_PASSWORD, "password_changed")
        _token, secret = await tokens.create(stale, "made meanwhile")
    client = app.test_client()
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert await ApiToken.all().count() == 1  # its row may stay; it opens nothing


async def test_logins_racing_a_password_change_never_outlive_it(app: Quart) -> None:
    """Many tries of the real race: whichever finishes first, no old-password login lives."""
    owner = app.test_client()
    await AuthActions(owner).register()
    password = PASSWORD
    for attempt in range(8):
        new = f"{NEW_PASSWORD} {attempt}"
        attacker = app.test_client()
        changer = app.test_client()
        await changer.post("/api/login", json={"username": "alice", "password": password})
        login = attacker.post("/api/login", json={"username": "alice", "password": password})
        user = await User.get()
        async with app.app_context():
            change = accounts.set_password(user, new, "password_changed")
            results = await asyncio.gather(login, change, return_exceptions=True)
        assert not isinstance(results[1], BaseException), results
        forget_copies(app)
        assert (await attacker.get("/api/me")).status_code == 401, attempt
        password = new


async def test_ending_every_session_works_by_query_whatever_their_number(
    app: Quart,
) -> None:
    """asyncpg takes 32,767 parameters at most: a list of ids could not end 33,000."""
    client = app.test_client()
    await AuthActions(client).register()
    user = await User.get()
    count = 33_000
    connection = get_connection("default")
    if USE_POSTGRES:
        await connection.execute_query(
            "INSERT INTO sessions (key_hash, user_id, created_at, last_seen_at, expires_at,"
            " remember, fresh, fingerprint, ip, user_agent, device, credential_generation)"
            " SELECT md5(n::text) || md5((n + 1)::text), $1, now(), now() - interval '1 hour',"
            " now() + interval '1 hour', false, true, 'x', '', '', '', 0"
            " FROM generate_series(1, $2) AS n",
            [user.id, count],
        )
    else:
        await connection.execute_query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO sessions (key_hash, user_id, created_at, last_seen_at, expires_at,"
            " remember, fresh, fingerprint, ip, user_agent, device, credential_generation)"
            " SELECT printf('%064d', i), ?, datetime('now'), datetime('now', '-1 hour'),"
            " datetime('now', '+1 hour'), 0, 1, 'x', '', '', '', 0 FROM n",
            [count, user.id],
        )
    assert await AuthSession.all().count() == count + 1
    response = await client.post("/api/sessions/revoke-others")
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["ended"] == count
    assert await AuthSession.all().count() == 1
    assert await index_status(client) == 200


async def test_expired_rows_are_purged(make_app: AppFactory) -> None:
    app = await make_app()
    await AuthActions(app.test_client()).register()
    alive = await AuthSession.get()
    now = datetime.now(UTC)
    for n, (last_seen, expires, remember) in enumerate(
        [
            (now, now - timedelta(seconds=1), True),  # past its absolute expiry
            (now - timedelta(hours=3), now + timedelta(hours=9), False),  # idle too long
            (now - timedelta(hours=3), now + timedelta(days=9), True),  # remembered: alive
        ]
    ):
        await AuthSession.create(
            key_hash=f"{n:064x}",
            user_id=alive.user_id,
            created_at=now,
            last_seen_at=last_seen,
            expires_at=expires,
            remember=remember,
            fingerprint="x",
            ip="",
            user_agent="",
        )
    async with app.app_context():
        purged = await sessions.store.purge(now, timedelta(hours=2))
    assert purged == 2
    assert await AuthSession.all().count() == 2
