"""Signed cookies verified once per worker: the same answers as itsdangerous, found faster."""

from __future__ import annotations

import time

import pytest
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from quart import Quart, session
from quart.typing import TestClientProtocol as Client

from quart_app import signed

from .conftest import AuthActions

KEYS = ["an-older-key", "the-current-key"]


def make(keys: list[str], calls: list[int], salt: str = "test") -> URLSafeTimedSerializer:
    calls.append(1)
    return URLSafeTimedSerializer(keys, salt=salt)


def test_a_token_is_verified_once_and_then_found() -> None:
    verified, calls = signed.Verified(), list[int]()
    token = URLSafeTimedSerializer(KEYS, salt="test").dumps({"a": 1})
    for _ in range(3):
        assert verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60) == {"a": 1}
    assert len(calls) == 1


def test_a_changed_token_is_checked_and_refused() -> None:
    verified, calls = signed.Verified(), list[int]()
    token = URLSafeTimedSerializer(KEYS, salt="test").dumps("key")
    verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(BadSignature):
        verified.loads(lambda: make(KEYS, calls), "test", KEYS, forged, 60)
    assert len(verified) == 1


def test_the_age_is_checked_again_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    verified, calls = signed.Verified(), list[int]()
    token = URLSafeTimedSerializer(KEYS, salt="test").dumps("key")
    assert verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60) == "key"
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    with pytest.raises(SignatureExpired):
        verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60)
    assert verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, None) == "key"
    monkeypatch.setattr(time, "time", lambda: now - 5)  # a clock set back
    with pytest.raises(SignatureExpired):
        verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60)


def test_a_key_taken_out_of_service_refuses_what_it_signed() -> None:
    verified, calls = signed.Verified(), list[int]()
    token = URLSafeTimedSerializer(["an-older-key"], salt="test").dumps("key")
    assert verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60) == "key"
    current = ["the-current-key"]
    with pytest.raises(BadSignature):
        verified.loads(lambda: make(current, calls), "test", current, token, 60)
    with pytest.raises(BadSignature):  # another salt: another kind of token
        verified.loads(lambda: make(KEYS, calls, "other"), "other", KEYS, token, 60)


def test_at_most_size_tokens_are_kept_the_least_recently_used_going_first() -> None:
    verified, calls = signed.Verified(size=2), list[int]()
    serializer = URLSafeTimedSerializer(KEYS, salt="test")
    first, second, third = (serializer.dumps(n) for n in range(3))
    for token in (first, second, first, third):
        verified.loads(lambda: make(KEYS, calls), "test", KEYS, token, 60)
    assert len(verified) == 2
    assert len(calls) == 3
    verified.loads(lambda: make(KEYS, calls), "test", KEYS, first, 60)  # still kept
    assert len(calls) == 3
    verified.loads(lambda: make(KEYS, calls), "test", KEYS, second, 60)  # went first
    assert len(calls) == 4


async def test_a_request_that_changes_the_session_changes_no_later_one(
    app: Quart, client: Client, auth: AuthActions
) -> None:
    @app.route("/test-signed/<value>")
    async def change(value: str) -> str:
        before = repr(session.get("list"))
        session.setdefault("list", []).append(value)  # changed in place
        return before

    await auth.register()
    async with client.session_transaction() as browser_session:
        browser_session["list"] = ["kept"]
    assert client.cookie_jar is not None
    jar = {c.name: c for c in client.cookie_jar}
    cookie = jar[app.config["SESSION_COOKIE_NAME"]]
    assert cookie.value is not None
    for value in ("one", "two"):
        client.set_cookie(cookie.domain, cookie.name, cookie.value, path=cookie.path)
        response = await client.get(f"/test-signed/{value}")
        assert await response.get_data(as_text=True) == "['kept']"
    assert isinstance(app.session_interface, signed.CookieSessionInterface)
    assert len(app.session_interface.verified) >= 1
