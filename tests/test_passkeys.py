"""Passkeys through the API, answered by a software authenticator written from the WebAuthn spec.

The authenticator makes ES256 credentials with "none" attestation, as platform
authenticators do; the server checks them with py_webauthn, as it checks a browser's. The
browser itself, with Chromium's virtual authenticator, is in test_two_factor_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.models import AuthSession, Passkey, User, WebAuthnChallenge

from .conftest import PASSWORD, AppFactory, csrf_token, forget_copies

ORIGIN = "http://localhost:8000"
RP_ID = "localhost"
UP, UV, AT = 0x01, 0x04, 0x40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    count: int = 0


@dataclass
class SoftAuthenticator:
    """A platform authenticator: resident ES256 keys, user verification on request."""

    origin: str = ORIGIN
    verifies_user: bool = True
    credentials: list[Credential] = field(default_factory=list)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": self.origin}
        return json.dumps(data).encode()

    def _flags(self) -> int:
        return UP | (UV if self.verifies_user else 0)

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32), -3: numbers.y.to_bytes(32)}
        credential = Credential(secrets.token_bytes(16), key, unb64(options["user"]["id"]))
        self.credentials.append(credential)
        rp_hash = hashlib.sha256(options["rp"]["id"].encode()).digest()
        auth_data = (
            rp_hash
            + bytes([self._flags() | AT])
            + struct.pack(">I", 0)
            + bytes(16)
            + struct.pack(">H", len(credential.id))
            + credential.id
            + cbor2.dumps(cose)
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64(credential.id),
            "rawId": b64(credential.id),
            "type": "public-key",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(self._client_data("webauthn.create", options["challenge"])),
                "attestationObject": b64(attestation),
                "transports": ["internal"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        credential: Credential | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        credential = credential or self.credentials[-1]
        credential.count = credential.count + 1 if count is None else count
        rp_hash = hashlib.sha256(options["rpId"].encode()).digest()
        auth_data = rp_hash + bytes([self._flags()]) + struct.pack(">I", credential.count)
        client_data = self._client_data("webauthn.get", options["challenge"])
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = credential.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64(credential.id),
            "rawId": b64(credential.id),
            "type": "public-key",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(credential.user_handle),
            },
        }


async def register(client: Client, username: str = "alice") -> None:
    response = await client.post("/api/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201


async def add_passkey(client: Client, authenticator: SoftAuthenticator, name: str = "Key") -> int:
    options = await (
        await client.post("/api/passkeys/options", json={"password": PASSWORD})
    ).get_json()
    credential = authenticator.create(options["options"])
    response = await client.post("/api/passkeys", json={"name": name, "credential": credential})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return int((await response.get_json())["id"])


async def passkey_login(client: Client, authenticator: SoftAuthenticator, **kwargs: Any) -> int:
    options = (await (await client.post("/api/login/passkey/options")).get_json())["options"]
    answer = authenticator.get(options, **kwargs)
    return (await client.post("/api/login/passkey", json={"credential": answer})).status_code


async def test_registration_options_ask_for_a_discoverable_verified_key(client: Client) -> None:
    await register(client)
    refused = await client.post("/api/passkeys/options", json={"password": "not the password"})
    assert refused.status_code == 403
    response = await client.post("/api/passkeys/options", json={"password": PASSWORD})
    options = (await response.get_json())["options"]
    assert options["rp"] == {"id": RP_ID, "name": "quart_app"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["user"]["name"] == "alice"
    assert "alice" not in unb64(options["user"]["id"]).decode(errors="replace")


async def test_relying_party_comes_from_public_url(make_app: AppFactory) -> None:
    app = await make_app(PUBLIC_URL="https://accounts.example.com")
    client = app.test_client()
    options = (await (await client.post("/api/login/passkey/options")).get_json())["options"]
    assert options["rpId"] == "accounts.example.com"
    assert options["userVerification"] == "required"
    assert options["allowCredentials"] == []


async def test_add_then_sign_in_with_the_passkey_alone(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    owner = app.test_client()
    await register(owner)
    await add_passkey(owner, authenticator, "Laptop")
    listed = await (await owner.get("/api/passkeys")).get_json()
    assert [p["name"] for p in listed["passkeys"]] == ["Laptop"]
    visitor = app.test_client()
    assert await passkey_login(visitor, authenticator) == 200
    me = await (await visitor.get("/api/me")).get_json()
    assert me["username"] == "alice"
    assert (await Passkey.get()).sign_count == 1


async def test_the_sign_counter_must_move_forward(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    owner = app.test_client()
    await register(owner)
    await add_passkey(owner, authenticator)
    assert await passkey_login(app.test_client(), authenticator, count=5) == 200
    # A cloned authenticator answers with a count the server has seen already.
    assert await passkey_login(app.test_client(), authenticator, count=5) == 401
    assert await passkey_login(app.test_client(), authenticator, count=3) == 401
    assert await passkey_login(app.test_client(), authenticator, count=6) == 200


async def test_a_challenge_is_used_once(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    owner = app.test_client()
    await register(owner)
    await add_passkey(owner, authenticator)
    visitor = app.test_client()
    options = (await (await visitor.post("/api/login/passkey/options")).get_json())["options"]
    answer = authenticator.get(options)
    assert (
        await visitor.post("/api/login/passkey", json={"credential": answer})
    ).status_code == 200
    await visitor.post("/api/logout")
    again = await visitor.post("/api/login/passkey", json={"credential": answer})
    assert again.status_code == 401
    assert (await again.get_json())["error"] == "invalid_passkey"
    assert not await WebAuthnChallenge.exists()


async def test_a_challenge_is_bound_to_its_browser_session(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    owner = app.test_client()
    await register(owner)
    await add_passkey(owner, authenticator)
    asked = app.test_client()
    options = (await (await asked.post("/api/login/passkey/options")).get_json())["options"]
    thief = app.test_client()
    answer = authenticator.get(options)
    assert (await thief.post("/api/login/passkey", json={"credential": answer})).status_code == 401
    assert (await thief.get("/api/me")).status_code == 401


@pytest.mark.parametrize(
    "authenticator",
    [SoftAuthenticator(verifies_user=False), SoftAuthenticator(origin="http://evil.example")],
    ids=["no-user-verification", "foreign-origin"],
)
async def test_registration_refused(app: Quart, authenticator: SoftAuthenticator) -> None:
    client = app.test_client()
    await register(client)
    options = await (
        await client.post("/api/passkeys/options", json={"password": PASSWORD})
    ).get_json()
    credential = authenticator.create(options["options"])
    response = await client.post("/api/passkeys", json={"name": "Key", "credential": credential})
    assert response.status_code == 401
    assert not await Passkey.exists()


async def test_sign_in_without_user_verification_is_refused(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    owner = app.test_client()
    await register(owner)
    await add_passkey(owner, authenticator)
    authenticator.verifies_user = False
    assert await passkey_login(app.test_client(), authenticator) == 401


async def test_another_users_passkey_is_no_second_factor(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    mallory = app.test_client()
    await register(mallory, "mallory")
    await add_passkey(mallory, authenticator)
    alice = app.test_client()
    await register(alice)
    await add_passkey(alice, SoftAuthenticator())
    # alice's own passkey confirms her session; mallory's does not.
    options = await (await alice.post("/api/reauthenticate/passkey/options")).get_json()
    answer = authenticator.get(options["options"], authenticator.credentials[0])
    refused = await alice.post("/api/reauthenticate/passkey", json={"credential": answer})
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "credential",
    [{}, {"rawId": "x" * 5000}, {"rawId": "%%%", "id": 1}, {"rawId": "AAAA", "response": []}],
)
async def test_malformed_answers_are_refused_cleanly(app: Quart, credential: Any) -> None:
    client = app.test_client()
    await client.post("/api/login/passkey/options")
    response = await client.post("/api/login/passkey", json={"credential": credential})
    assert response.status_code == 401


async def test_rename_and_remove(app: Quart) -> None:
    client = app.test_client()
    await register(client)
    passkey_id = await add_passkey(client, SoftAuthenticator())
    renamed = await client.patch(f"/api/passkeys/{passkey_id}", json={"name": " Phone "})
    assert (await renamed.get_json())["name"] == "Phone"
    blank = await client.patch(f"/api/passkeys/{passkey_id}", json={"name": "   "})
    assert blank.status_code == 422
    wrong = await client.delete(f"/api/passkeys/{passkey_id}", json={"password": "nope nope"})
    assert wrong.status_code == 403
    assert (
        await client.delete("/api/passkeys/999", json={"password": PASSWORD})
    ).status_code == 404
    gone = await client.delete(f"/api/passkeys/{passkey_id}", json={"password": PASSWORD})
    assert gone.status_code == 204
    assert not await Passkey.exists()


async def test_someone_elses_passkey_cannot_be_renamed(app: Quart) -> None:
    owner = app.test_client()
    await register(owner)
    passkey_id = await add_passkey(owner, SoftAuthenticator())
    other = app.test_client()
    await register(other, "bob")
    response = await other.patch(f"/api/passkeys/{passkey_id}", json={"name": "mine"})
    assert response.status_code == 404
    assert (await Passkey.get()).name == "Key"


async def test_a_passkey_makes_a_stale_session_fresh(app: Quart) -> None:
    authenticator = SoftAuthenticator()
    client = app.test_client()
    await register(client)
    await add_passkey(client, authenticator)
    await AuthSession.filter().update(fresh=False)
    forget_copies(app)
    other = await AuthSession.create(
        key_hash="0" * 64,
        user_id=(await User.get()).id,
        created_at=datetime.now(UTC),
        last_seen_at=datetime.now(UTC),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        fingerprint="",
        ip="",
        user_agent="",
    )
    assert (await client.delete(f"/api/sessions/{other.id}")).status_code == 403
    options = await (await client.post("/api/reauthenticate/passkey/options")).get_json()
    answer = authenticator.get(options["options"])
    confirmed = await client.post("/api/reauthenticate/passkey", json={"credential": answer})
    assert confirmed.status_code == 204
    assert (await client.delete(f"/api/sessions/{other.id}")).status_code == 204


async def test_pages_list_rename_and_remove(app: Quart) -> None:
    client = app.test_client()
    await register(client)
    passkey_id = await add_passkey(client, SoftAuthenticator(), "Laptop")
    page = await (await client.get("/account/passkeys/")).get_data(as_text=True)
    assert "Laptop" in page
    token = csrf_token(page)
    base = f"/account/passkeys/{passkey_id}"
    renamed = await client.post(f"{base}/rename", form={"csrf_token": token, "name": "Desk"})
    assert renamed.status_code == 303
    assert (await Passkey.get()).name == "Desk"
    no_token = await client.post(f"{base}/rename", form={"name": "Sneaky"})
    assert no_token.status_code == 400
    wrong = await client.post(f"{base}/remove", form={"csrf_token": token, "password": "no no no"})
    assert wrong.status_code == 303
    assert await Passkey.exists()
    gone = await client.post(f"{base}/remove", form={"csrf_token": token, "password": PASSWORD})
    assert gone.status_code == 303
    assert not await Passkey.exists()
    assert "You have no passkeys yet." in await (await client.get("/account/passkeys/")).get_data(
        as_text=True
    )


async def test_confirm_page_offers_a_passkey_when_there_is_one(app: Quart) -> None:
    client = app.test_client()
    await register(client)
    page = await (await client.get("/account/confirm/")).get_data(as_text=True)
    assert "Confirm with a passkey" not in page
    await add_passkey(client, SoftAuthenticator())
    page = await (await client.get("/account/confirm/")).get_data(as_text=True)
    assert "Confirm with a passkey" in page
    assert 'data-verify="/api/reauthenticate/passkey"' in page
