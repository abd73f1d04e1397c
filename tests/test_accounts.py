"""The accounts service: username and password rules, uniqueness, login, hash upgrades."""

from __future__ import annotations

import asyncio
import re
from importlib import metadata, resources
from typing import Any, cast

import argon2
import pytest
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client
from werkzeug.security import generate_password_hash
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from quart_app import accounts
from quart_app.accounts import InvalidCredentials, InvalidField, UsernameTaken
from quart_app.models import User
from quart_app.passwords import PasswordHasher

from .conftest import CSRF_PATTERN, PASSWORD, AppFactory, AuthActions

CLIENT = "127.0.0.1"
ARGON2_PARAMETERS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")
# Same methods as Flask's werkzeug; pbkdf2 with Werkzeug 2.x's rounds rather than 3.x's
# million, which would take a third of a second per check.
PBKDF2 = "pbkdf2:sha256:260000"
WERKZEUG_METHODS = ["scrypt", PBKDF2]
BAD_PASSWORD_LENGTH = "8 to 1024 characters"
BAD_CHARACTERS = "may contain only letters, digits"
BAD_LENGTH = "2 to 32 characters"
INVISIBLE = "invisible or control characters"


def fullwidth(text: str) -> str:
    """text as typed on a full-width (CJK) keyboard: NFKC turns it back into ASCII."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def hasher(app: Quart) -> PasswordHasher:
    return cast(PasswordHasher, app.extensions["password_hasher"])


def argon2_parameters(stored_hash: str) -> tuple[int, int, int]:
    match = ARGON2_PARAMETERS.match(stored_hash)
    assert match, f"not an argon2id hash: {stored_hash[:40]!r}"
    memory, time, lanes = (int(value) for value in match.groups())
    return memory, time, lanes


def app_parameters(app: Quart) -> tuple[int, int, int]:
    config = app.config
    return config["ARGON2_MEMORY_COST"], config["ARGON2_TIME_COST"], config["ARGON2_PARALLELISM"]


async def register(app: Quart, username: str, password: str = PASSWORD) -> User:
    async with app.app_context():
        return await accounts.register(username, password, client=CLIENT)


async def authenticate(app: Quart, username: str, password: str = PASSWORD) -> User:
    async with app.app_context():
        return await accounts.authenticate(username, password, client=CLIENT)


async def stored_hash(username_key: str) -> str:
    return (await User.get(username_key=username_key)).password_hash


def redirected_to_index(response: Response) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"] == "/index/"


def common_passwords_file() -> str:
    r"""The text quart_app/data/common-passwords.txt must have, from the installed zxcvbn.

    After upgrading zxcvbn, regenerate the file from the project's root, in its venv, with
    python -c 'import tests.test_accounts as t; print(t.common_passwords_file(), end="")' \
        > quart_app/data/common-passwords.txt
    """
    passwords: list[str] = FREQUENCY_LISTS["passwords"]
    header = (
        f'# The {len(passwords):,} most common passwords, most common first: the "passwords"'
        f" frequency list of zxcvbn-python {metadata.version('zxcvbn')} (from Xato's"
        " 10-million-password corpus; https://github.com/dwolfhub/zxcvbn-python, MIT License,"
        " Copyright (c) 2016 Daniel Wolf)."
    )
    return "".join(f"{line}\n" for line in [header, *passwords])


# Usernames


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ab", "ab"),
        ("Alice", "Alice"),
        ("张伟", "张伟"),
        ("नमस्ते", "नमस्ते"),  # Devanagari: virama and vowel sign are combining marks
        ("สมชาย", "สมชาย"),  # Thai
        ("Иван_Петров", "Иван_Петров"),
        ("محمد.علي", "محمد.علي"),
        ("a.b-c_d", "a.b-c_d"),
        ("user2024", "user2024"),
        ("x" * 32, "x" * 32),
        (fullwidth("Alice"), "Alice"),  # full-width letters: RFC 8265's width mapping
        ("日本語テスト", "日本語テスト"),  # Han and Katakana mix, as Japanese does
        ("İlker", "İlker"),  # Turkish dotted capital I
    ],
)
def test_username_accepted(raw: str, stored: str) -> None:
    assert accounts.clean_username(raw) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", BAD_LENGTH),
        ("a", BAD_LENGTH),
        ("张", BAD_LENGTH),
        ("x" * 33, BAD_LENGTH),
        ("\ufb03" * 11, BAD_CHARACTERS),  # ligatures: compatibility characters
        ("㍿", BAD_CHARACTERS),  # one compatibility character, four after NFKC
        ("a b", BAD_CHARACTERS),
        ("a\u00a0b", BAD_CHARACTERS),  # no-break space
        ("a\tb", INVISIBLE),
        ("alice@example.com", BAD_CHARACTERS),
        ("<script>", BAD_CHARACTERS),
        ("ab\x00", INVISIBLE),
        ("ab\ud800", BAD_CHARACTERS),  # a lone surrogate
        ("bob😀", BAD_CHARACTERS),
        ("a\u200bb", INVISIBLE),  # zero-width space
        ("\u202eab", INVISIBLE),  # right-to-left override
        ("\u0301ab", BAD_CHARACTERS),  # a combining mark with no letter
        ("a/b", BAD_CHARACTERS),
        ("o'brien", BAD_CHARACTERS),
    ],
)
def test_username_refused(raw: str, message: str) -> None:
    with pytest.raises(InvalidField) as error:
        accounts.clean_username(raw)

    assert error.value.field == "username"
    assert message in str(error.value.description)


@pytest.mark.parametrize(
    "taken", ["alice", "ALICE", "aLiCe", fullwidth("Alice"), fullwidth("alice")]
)
async def test_username_is_unique_without_regard_to_case(
    app: Quart, auth: AuthActions, taken: str
) -> None:
    assert redirected_to_index(await auth.register("Alice"))

    response = await AuthActions(app.test_client()).register(taken)

    assert response.status_code == 400
    assert "already taken" in await response.get_data(as_text=True)
    assert [user.username for user in await User.all()] == ["Alice"]


async def test_username_is_shown_as_typed(app: Quart, client: Client, auth: AuthActions) -> None:
    await auth.register("ÉmilieZhang张")
    user = await User.get()
    assert user.username == "ÉmilieZhang张"
    assert user.username_key == "émiliezhang张"

    await auth.logout()
    assert redirected_to_index(await auth.login("ÉMILIEZHANG张"))
    page = await (await client.get("/index/")).get_data(as_text=True)
    assert "ÉmilieZhang张" in page


# Passwords


@pytest.mark.parametrize(
    ("password", "username", "message"),
    [
        ("a" * 7, "someone", BAD_PASSWORD_LENGTH),
        ("z" * 1025, "someone", BAD_PASSWORD_LENGTH),
        ("abcd\x00efgh", "someone", "NUL"),
        ("password1", "someone", "common"),
        ("iloveyou", "someone", "common"),
        ("qwertyuiop", "someone", "common"),
        ("PASSWORD1", "someone", "common"),
        (fullwidth("Password1"), "someone", "common"),  # full-width, NFKC
        ("xxALICExx-secret", "alice", "username"),
        ("alice-secret-phrase", "Alice", "username"),
        ("my-" + fullwidth("alice") + "-secret", "alice", "username"),
    ],
)
def test_password_refused(password: str, username: str, message: str) -> None:
    with pytest.raises(InvalidField) as error:
        accounts.check_password(password, username)

    assert error.value.field == "password"
    assert message in str(error.value.description)


@pytest.mark.parametrize(
    "password",
    [
        "kq7vzx2m",  # exactly 8
        "y" * 1024,
        "aaaaaaaaaaaabbbbbbbb",  # no composition rules
        "abcdefghijklmnopqrst",
        "zzzzzzzzzzzzzzzzzzzz",
        "correct horse battery staple",
        "пароль очень длинный",
        "密码密码密码密码",
        "🔑" * 8,
    ],
)
def test_password_accepted(password: str) -> None:
    accounts.check_password(password, "alice")


def test_the_shipped_common_password_list_is_zxcvbns() -> None:
    shipped = resources.files("quart_app").joinpath(accounts.COMMON_PASSWORDS_FILE)
    assert shipped.read_text(encoding="utf-8").splitlines() == common_passwords_file().splitlines()
    assert accounts.common_passwords() == frozenset(FREQUENCY_LISTS["passwords"])


def test_the_common_password_list_is_large_and_used() -> None:
    common = sorted(accounts.common_passwords())
    assert len(common) >= 10_000

    long_enough = [password for password in common if len(password) >= 8]
    for password in long_enough[::500]:
        with pytest.raises(InvalidField, match="common"):
            accounts.check_password(password, "someone")


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("alice", "short", BAD_PASSWORD_LENGTH),
        ("alice", "iloveyou", "too common"),
        ("alice", "secret-Alice-2024", "must not contain the username"),
        ("a", PASSWORD, BAD_LENGTH),
        ("a b", PASSWORD, BAD_CHARACTERS),
    ],
)
async def test_register_form_shows_the_reason(
    auth: AuthActions, username: str, password: str, message: str
) -> None:
    response = await auth.register(username, password)

    assert response.status_code == 400
    page = await response.get_data(as_text=True)
    assert message in page
    assert f'value="{username}"' in page
    assert await User.all().count() == 0


@pytest.mark.parametrize("length", [100, 1024])
async def test_password_is_never_truncated(app: Quart, auth: AuthActions, length: int) -> None:
    password = "k" * (length - 1) + "a"
    assert redirected_to_index(await auth.register("alice", password))
    await auth.logout()

    almost = AuthActions(app.test_client())
    assert (await almost.login("alice", password[:-1] + "b")).status_code == 401
    assert (await almost.login("alice", password[:-1])).status_code == 401
    assert redirected_to_index(await almost.login("alice", password))


async def test_unencodable_password_is_refused_not_crashed(app: Quart) -> None:
    # JSON can carry a lone surrogate ("\ud800"); UTF-8, and so the hash, cannot.
    with pytest.raises(InvalidField) as error:
        await register(app, "dave", "long enough \ud800 password")

    assert error.value.field == "password"
    assert await User.all().count() == 0


# Registration races


@pytest.mark.parametrize(
    "names",
    [["bob"] * 20, ["bob", "Bob", "BOB", fullwidth("bob")] * 5],
    ids=["same", "case-variants"],
)
async def test_concurrent_registrations_of_one_name_make_one_account(
    make_app: AppFactory, names: list[str]
) -> None:
    # Cheap hashes: the race is about the database, not argon2.
    app = await make_app(ARGON2_MEMORY_COST=1024, ARGON2_TIME_COST=1)

    async with app.app_context():
        results = await asyncio.gather(
            *(accounts.register(name, PASSWORD, client=CLIENT) for name in names),
            return_exceptions=True,
        )

    created = [result for result in results if isinstance(result, User)]
    taken = [result for result in results if isinstance(result, UsernameTaken)]
    assert len(created) == 1
    assert len(taken) == len(names) - 1, [r for r in results if not isinstance(r, User)]
    assert await User.all().count() == 1
    assert (await User.get()).id == created[0].id


# Authentication


async def test_unknown_user_wrong_password_and_inactive_account_get_one_answer(
    app: Quart,
) -> None:
    with pytest.raises(InvalidCredentials) as unknown:
        await authenticate(app, "alice")
    user = await register(app, "alice")
    with pytest.raises(InvalidCredentials) as wrong:
        await authenticate(app, "alice", PASSWORD + "!")
    user.is_active = False
    await user.save(update_fields=["is_active"])
    with pytest.raises(InvalidCredentials) as inactive:
        await authenticate(app, "alice")

    answers = {
        (type(e.value), e.value.code, e.value.description) for e in (unknown, wrong, inactive)
    }
    assert answers == {(InvalidCredentials, 401, accounts.LOGIN_FAILED)}


async def test_login_form_gives_one_page_for_every_failure(app: Quart) -> None:
    async def failed_login_page() -> str:
        response = await AuthActions(app.test_client()).login("alice")
        assert response.status_code == 401
        return CSRF_PATTERN.sub("csrf", await response.get_data(as_text=True))

    unknown = await failed_login_page()
    user = await register(app, "alice", PASSWORD + "!")
    wrong = await failed_login_page()
    user.password_hash = await hasher(app).hash(PASSWORD)
    user.is_active = False
    await user.save(update_fields=["password_hash", "is_active"])
    inactive = await failed_login_page()

    assert str(accounts.LOGIN_FAILED) in unknown
    assert unknown == wrong == inactive


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", PASSWORD + "\ud800"),
        ("al\ud800ice", PASSWORD),
        ("al\x00ice", PASSWORD),
        ("alice", PASSWORD + "\x00"),
        ("alice", "x" * 100_000),
        ("x" * 100_000, PASSWORD),
        ("", ""),
    ],
    ids=[
        "surrogate-password",
        "surrogate-name",
        "nul-name",
        "nul-password",
        "huge-password",
        "huge-name",
        "empty",
    ],
)
async def test_malformed_credentials_are_refused_not_crashed(
    app: Quart, username: str, password: str
) -> None:
    await register(app, "alice")

    with pytest.raises(InvalidCredentials):
        await authenticate(app, username, password)


async def test_login_accepts_any_case_of_the_name(app: Quart) -> None:
    user = await register(app, "Alice")

    assert (await authenticate(app, fullwidth("ALICE"))).id == user.id


# Hashes from elsewhere


@pytest.mark.parametrize(
    ("method", "password"),
    [
        ("scrypt", PASSWORD),
        (PBKDF2, PASSWORD),
        ("scrypt", "pässwörd 密码 пароль"),
        # Typed on a full-width keyboard, and hashed by Flask as typed.
        (PBKDF2, fullwidth("Flask password 1")),
    ],
)
async def test_werkzeug_hash_logs_in_and_is_upgraded(
    app: Quart, auth: AuthActions, method: str, password: str
) -> None:
    old_hash = generate_password_hash(password, method)
    await User.create(username="Carol", username_key="carol", password_hash=old_hash)

    assert redirected_to_index(await auth.login("carol", password))

    new_hash = await stored_hash("carol")
    assert new_hash.startswith("$argon2id$")
    assert argon2_parameters(new_hash) == app_parameters(app)
    assert not hasher(app).needs_rehash(new_hash)
    # The upgraded hash serves the next login.
    assert redirected_to_index(await AuthActions(app.test_client()).login("carol", password))
    assert await stored_hash("carol") == new_hash


@pytest.mark.parametrize("method", WERKZEUG_METHODS)
async def test_wrong_password_leaves_the_werkzeug_hash(auth: AuthActions, method: str) -> None:
    old_hash = generate_password_hash(PASSWORD, method)
    await User.create(username="carol", username_key="carol", password_hash=old_hash)

    assert (await auth.login("carol", PASSWORD + "!")).status_code == 401
    assert await stored_hash("carol") == old_hash


@pytest.mark.parametrize(
    ("app_config", "old_parameters"),
    [
        ({}, {"time_cost": 3, "memory_cost": 19456, "parallelism": 1}),
        ({}, {"time_cost": 2, "memory_cost": 65536, "parallelism": 1}),
        ({"ARGON2_TIME_COST": 3}, {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}),
    ],
    ids=["t3-to-default", "m64MiB-to-default", "default-to-t3"],
)
async def test_argon2_hash_is_rehashed_when_the_parameters_change(
    make_app: AppFactory, app_config: dict[str, Any], old_parameters: dict[str, Any]
) -> None:
    app = await make_app(**app_config)
    old_hash = argon2.PasswordHasher(**old_parameters).hash(PASSWORD)
    await User.create(username="dan", username_key="dan", password_hash=old_hash)

    assert redirected_to_index(await AuthActions(app.test_client()).login("dan"))

    new_hash = await stored_hash("dan")
    assert new_hash != old_hash
    assert argon2_parameters(new_hash) == app_parameters(app)


async def test_current_hash_is_not_rewritten_on_login(app: Quart, auth: AuthActions) -> None:
    await auth.register("erin")
    before = await stored_hash("erin")
    await auth.logout()

    assert redirected_to_index(await auth.login("erin"))
    assert await stored_hash("erin") == before


# Lockout that cannot be used against the owner (OWASP's device cookies)

LOCKOUT = {
    "RATE_LIMITER_ENABLED": True,
    "LOGIN_FAILURES_PER_ACCOUNT": "3/15 minutes",
    "LOGIN_FAILURES_PER_DEVICE": "3/15 minutes",
}


def device_cookie(client: Client) -> str | None:
    assert client.cookie_jar is not None
    return next((c.value for c in client.cookie_jar if c.name == "quart_app_device"), None)


async def owner_with_a_device(app: Quart) -> AuthActions:
    """Alice, registered, logged in once from this client (so it holds a device cookie)."""
    owner = AuthActions(app.test_client())
    await owner.register()
    assert device_cookie(owner.client) is None  # registering is not a login
    await owner.logout()
    assert (await owner.login()).status_code == 303
    assert device_cookie(owner.client) is not None
    await owner.logout()
    return owner


async def test_guesses_from_elsewhere_do_not_lock_out_a_client_that_logged_in_before(
    make_app: AppFactory,
) -> None:
    app = await make_app(**LOCKOUT)
    owner = await owner_with_a_device(app)
    attacker = AuthActions(app.test_client())

    statuses = [(await attacker.login(password=PASSWORD + "!")).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    # Unknown clients stay locked out, right password or not...
    assert (await attacker.login()).status_code == 429
    # ...while the owner's client logs in, makes a token and changes the password.
    assert (await owner.login()).status_code == 303
    token = await owner.client.post("/api/tokens", json={"name": "ci", "password": PASSWORD})
    assert token.status_code == 201


async def test_a_device_has_its_own_limit_and_a_new_cookie_at_each_login(
    make_app: AppFactory,
) -> None:
    app = await make_app(**LOCKOUT)
    owner = await owner_with_a_device(app)
    first_cookie = device_cookie(owner.client)
    assert (await owner.login()).status_code == 303
    assert device_cookie(owner.client) not in (None, first_cookie)
    await owner.logout()
    laptop = AuthActions(app.test_client())
    assert (await laptop.login()).status_code == 303  # the account's limit is untouched
    await laptop.logout()

    statuses = [(await owner.login(password=PASSWORD + "!")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert (await owner.login()).status_code == 429  # this device is locked out...
    assert (await laptop.login()).status_code == 303  # ...not the account's other devices
    assert (await AuthActions(app.test_client()).login()).status_code == 303  # nor new ones


async def test_a_device_cookie_counts_only_for_its_own_account(make_app: AppFactory) -> None:
    app = await make_app(**LOCKOUT)
    await owner_with_a_device(app)
    attacker = AuthActions(app.test_client())
    await attacker.register("mallory")
    await attacker.logout()
    assert (await attacker.login("mallory")).status_code == 303
    await attacker.logout()

    statuses = [(await attacker.login(password=PASSWORD + "!")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # A forged cookie is no device at all.
    assert attacker.client.cookie_jar is not None
    attacker.client.cookie_jar.clear()
    attacker.client.set_cookie("localhost", "quart_app_device", "forged.cookie.value")
    assert (await attacker.login()).status_code == 429


async def test_the_device_cookie_is_http_only_strict_and_host_wide(make_app: AppFactory) -> None:
    app = await make_app()
    auth = AuthActions(app.test_client())
    await auth.register()
    await auth.logout()
    response = await auth.login()
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("quart_app_device=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "SameSite=Strict" in header
    assert "Domain" not in header


# Accounts from before the PRECIS rule


@pytest.mark.parametrize(
    ("stored", "key", "typed"),
    [
        ("Straße", "strasse", "straße"),  # case folding made the old key; PRECIS lower-cases
        ("Straße", "strasse", "STRASSE"),
        ("alice\u1160", "alice\u1160", "alice\u3164"),  # a filler PRECIS refuses today
        ("株式会社", "株式会社", "㍿"),  # the old rule applied NFKC
    ],
)
async def test_a_name_from_before_the_rule_still_logs_in(
    app: Quart, stored: str, key: str, typed: str
) -> None:
    old_hash = generate_password_hash(PASSWORD, "scrypt")
    user = await User.create(username=stored, username_key=key, password_hash=old_hash)

    assert (await authenticate(app, typed)).id == user.id
    assert (await User.get(id=user.id)).password_hash.startswith("$argon2id$")


async def test_the_precis_key_wins_over_the_key_of_before(app: Quart) -> None:
    # "STRASSE" from before the rule holds the folded key "strasse"; "straße", made since,
    # holds its PRECIS key. Each is found by its own name.
    old = await User.create(
        username="STRASSE", username_key="strasse", password_hash=await hasher(app).hash(PASSWORD)
    )
    new = await register(app, "straße")

    assert (await authenticate(app, "Straße")).id == new.id
    assert (await authenticate(app, "STRASSE")).id == old.id
