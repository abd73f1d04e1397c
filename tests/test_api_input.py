"""The JSON API and bad input: malformed JSON, wrong types, sizes, NULs, methods, paths."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.models import ApiToken, AuthSession, User

from .api_helpers import (
    ALICE,
    JSON_ROUTES,
    UNSAFE_ROUTES,
    MiB,
    error_of,
    logged_in_for,
    nothing_but_bob,
    nothing_stored,
    register,
    send,
    signed_in,
)
from .conftest import PASSWORD, auth_cookie

# Malformed and hostile input ---------------------------------------------------------------


@pytest.mark.parametrize("path", UNSAFE_ROUTES)
@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b'{"username": "alice", "password": "x",}',
        b"{'username': 'alice'}",
        b'{"username": "alice" "password": "x"}',
        b"\xff\xfe{}",
        b'{"username": "al\xffice", "password": "correct horse battery staple", "name": "\xc3"}',
        b'{"username": "alice", "password": "' + "ü".encode("latin-1") + b'xxxxxxxxx"}',
        '{"username": "alice"}'.encode("utf-16"),
        b'{"username": ' + b"9" * 5000 + b"}",
    ],
    ids=[
        "truncated",
        "trailing-comma",
        "single-quotes",
        "missing-comma",
        "bom-garbage",
        "invalid-utf8",
        "latin-1",
        "utf-16",
        "huge-number",
    ],
)
async def test_malformed_json_is_400(client: Client, path: str, data: bytes) -> None:
    await logged_in_for(path, client)
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    await error_of(response, 400, "invalid_json")
    await nothing_but_bob(path)


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "data",
    [b"[]", b'"x"', b"null", b"5", b"true", b"[" * 50_000 + b"]" * 50_000],
    ids=["array", "string", "null", "number", "bool", "deeply-nested"],
)
async def test_json_that_is_not_an_object_is_refused(
    client: Client, path: str, data: bytes
) -> None:
    await logged_in_for(path, client)
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    if data.startswith(b"[["):
        await error_of(response, 400, "invalid_json")  # too deep to parse
    else:
        error = await error_of(response, 422, "validation_error")
        assert [d.field for d in error.details or []] == ["body"]
    await nothing_but_bob(path)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/register", {"username": 5, "password": PASSWORD}, "username"),
        ("/api/register", {"username": "alice", "password": 12345678}, "password"),
        ("/api/register", {"username": None, "password": PASSWORD}, "username"),
        ("/api/register", {"username": ["alice"], "password": PASSWORD}, "username"),
        ("/api/register", {"username": {"$ne": ""}, "password": PASSWORD}, "username"),
        ("/api/login", {"username": 5, "password": PASSWORD}, "username"),
        ("/api/login", {"username": "alice", "password": True}, "password"),
        ("/api/login", {"username": "alice", "password": PASSWORD, "remember": "yes"}, "remember"),
        ("/api/login", {"username": "alice", "password": PASSWORD, "remember": 1}, "remember"),
        ("/api/login", {"username": "alice", "password": PASSWORD, "remember": None}, "remember"),
        ("/api/tokens", {"name": ["x"], "password": PASSWORD}, "name"),
        ("/api/tokens", {"name": "x", "password": 5}, "password"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(
    app: Quart, client: Client, path: str, body: dict[str, Any], field: str
) -> None:
    await signed_in(client)  # alice exists, so a coerced login would succeed
    sender = client if path == "/api/tokens" else app.test_client()
    error = await error_of(await sender.post(path, json=body), 422, "validation_error")
    assert error.details is not None
    assert field in [d.field for d in error.details]
    assert await User.all().count() == 1
    assert await AuthSession.all().count() == 1
    assert await ApiToken.all().count() == 0


@pytest.mark.parametrize(
    ("path", "body", "missing"),
    [
        ("/api/register", {}, {"username", "password"}),
        ("/api/register", {"username": "alice"}, {"password"}),
        ("/api/register", {"password": PASSWORD}, {"username"}),
        ("/api/login", {}, {"username", "password"}),
        ("/api/login", {"username": "alice"}, {"password"}),
        ("/api/login", {"password": PASSWORD, "remember": True}, {"username"}),
    ],
)
async def test_missing_fields_are_422_naming_each(
    client: Client, path: str, body: dict[str, Any], missing: set[str]
) -> None:
    error = await error_of(await client.post(path, json=body), 422, "validation_error")
    assert error.details is not None
    assert {d.field for d in error.details} == missing
    await nothing_stored()


@pytest.mark.parametrize("path", ["/api/register", "/api/login"])
async def test_empty_json_content_is_refused(client: Client, path: str) -> None:
    response = await client.post(path, headers={"Content-Type": "application/json"})
    await error_of(response, 400, "bad_request")
    await nothing_stored()


@pytest.mark.parametrize("path", UNSAFE_ROUTES)
async def test_bodies_over_one_mib_are_413(client: Client, path: str) -> None:
    await logged_in_for(path, client)
    padding = "x" * (2 * MiB)
    response = await client.post(path, json={**ALICE, "name": "x", "padding": padding})
    await error_of(response, 413)
    await nothing_but_bob(path)


@pytest.mark.parametrize(
    ("field", "size"), [("username", 100_000), ("password", 100_000), ("username", 4097)]
)
async def test_huge_fields_are_422(client: Client, field: str, size: int) -> None:
    body = {**ALICE, field: "a" * size}
    error = await error_of(await client.post("/api/register", json=body), 422, "validation_error")
    assert error.details is not None
    assert [d.field for d in error.details] == [field]
    await nothing_stored()


@pytest.mark.parametrize("path", ["/api/register", "/api/login"])
@pytest.mark.parametrize(
    "body",
    [
        {"username": "ali\x00ce", "password": PASSWORD},
        {"username": "\x00", "password": PASSWORD},
        {"username": "alice", "password": PASSWORD + "\x00"},
        {"username": "alice", "password": "\x00" * 12},
    ],
    ids=["nul-in-username", "nul-username", "nul-in-password", "nul-password"],
)
async def test_nul_bytes_are_refused_and_nothing_stored(
    client: Client, path: str, body: dict[str, str]
) -> None:
    response = await client.post(path, json=body)
    error = await error_of(response, 400, "invalid_field")
    assert error.details
    assert auth_cookie(client) is None
    await nothing_stored()


async def test_login_with_nul_is_400_and_never_matches(app: Quart, client: Client) -> None:
    await signed_in(client)
    other = app.test_client()
    body = {"username": "alice\x00", "password": PASSWORD + "\x00"}
    await error_of(await other.post("/api/login", json=body), 400, "invalid_field")
    assert auth_cookie(other) is None


@pytest.mark.parametrize("path", UNSAFE_ROUTES)
@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", b"username=alice&password=correct+horse&name=x"),
        ("text/plain", b'{"username": "alice", "password": "correct horse battery staple"}'),
        ("text/plain;charset=UTF-8", b'{"name": "x", "password": "correct horse battery staple"}'),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="x"'),
        ("application/jsonx", b"{}"),
        (None, b'{"username": "alice", "password": "correct horse battery staple"}'),
    ],
    ids=["form", "text-plain", "text-plain-charset", "multipart", "not-json", "no-content-type"],
)
async def test_non_json_bodies_are_415(
    client: Client, path: str, content_type: str | None, data: bytes
) -> None:
    await logged_in_for(path, client)
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(path, data=data, headers=headers)
    await error_of(response, 415)
    await nothing_but_bob(path)


# Other methods and paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/register"), ("GET", "/api/login"), ("GET", "/api/logout"), ("PUT", "/api/me")],
)
async def test_wrong_method_is_405_json(client: Client, method: str, path: str) -> None:
    response = await send(client, method, path)
    await error_of(response, 405)
    allowed = {"HEAD", "GET", "OPTIONS"} if path == "/api/me" else {"POST", "OPTIONS"}
    assert set(response.headers["Allow"].split(", ")) == allowed


async def test_unknown_api_path_is_404_json(client: Client) -> None:
    await error_of(await client.get("/api/nothing-here"), 404, "not_found")


async def test_api_responses_carry_the_security_headers(client: Client) -> None:
    response = await register(client)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Server" not in response.headers
