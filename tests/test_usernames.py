"""The username rule: RFC 8265 (PRECIS) and UTS #39 look-alikes, through the real form and API."""

from __future__ import annotations

import asyncio

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app import accounts, usernames
from quart_app.accounts import UsernameTaken
from quart_app.models import User

from .conftest import PASSWORD, AppFactory, AuthActions

INVISIBLE = "invisible or control characters"
MIXED = "must not mix letters or digits of different scripts"
TAKEN = "already taken"
CYRILLIC_A = "\u0430"
HANGUL_FILLER = "\u3164"

# (the name that exists, the one registered next, what the second gets). "taken": the two
# look alike (UTS #39 skeleton) or differ by case or width (PRECIS); a message: refused
# outright, whatever exists.
PAIRS = [
    ("alice", CYRILLIC_A + "lice", MIXED),  # Latin and Cyrillic in one name
    ("ape", "\u0430\u0440\u0435", TAKEN),  # all Cyrillic: "аре" looks like "ape"
    ("alice", "alice" + HANGUL_FILLER, INVISIBLE),
    ("alice", HANGUL_FILLER * 3, INVISIBLE),  # made only of an invisible letter
    ("alice", "ali\u034fce", INVISIBLE),  # COMBINING GRAPHEME JOINER
    ("alice", "alice\ufe0f", INVISIBLE),  # VARIATION SELECTOR-16
    ("alice", "ali\u200dce", INVISIBLE),  # ZERO WIDTH JOINER
    ("alice", "al\u0131ce", TAKEN),  # dotless ı looks like i
    ("ilker", "i\u0307lker", INVISIBLE),  # i and a combining dot above: a hidden overlay
    ("alice", "ａｌｉｃｅ", TAKEN),  # full width: the same name by PRECIS width mapping
    ("alice", "ALICE", TAKEN),
    ("Straße", "STRASSE", None),  # PRECIS lower-cases, it does not fold ß
    ("mary", "rnary", TAKEN),  # UTS #39: m looks like rn
    ("rnary", "mary", TAKEN),
    ("bill", "bi11", TAKEN),  # 1 looks like l
    ("louise", "Iouise", TAKEN),  # capital I looks like l
    ("ilker", "İlker", None),  # Turkish İ: its dot shows, it is a name of its own
    ("user1", "user\u0967", MIXED),  # a Devanagari digit one after Latin letters
]
PAIR_IDS = [f"{first!a}-{second!a}" for first, second, _ in PAIRS]


async def register_json(client: Client, username: str) -> tuple[int, dict[str, object]]:
    response = await client.post("/api/register", json={"username": username, "password": PASSWORD})
    return response.status_code, await response.get_json()


@pytest.mark.parametrize(("first", "second", "answer"), PAIRS, ids=PAIR_IDS)
async def test_register_form(
    app: Quart, auth: AuthActions, first: str, second: str, answer: str | None
) -> None:
    assert (await auth.register(first)).status_code == 303
    response = await AuthActions(app.test_client()).register(second)

    if answer is None:
        assert response.status_code == 303
        assert await User.all().count() == 2
        return
    assert response.status_code == 400
    assert answer in await response.get_data(as_text=True)
    assert [user.username for user in await User.all()] == [first]


@pytest.mark.parametrize(("first", "second", "answer"), PAIRS, ids=PAIR_IDS)
async def test_register_api(app: Quart, first: str, second: str, answer: str | None) -> None:
    assert (await register_json(app.test_client(), first))[0] == 201
    status, body = await register_json(app.test_client(), second)

    if answer is None:
        assert status == 201
        assert await User.all().count() == 2
        return
    if answer == TAKEN:
        assert (status, body["error"]) == (409, "username_taken")
    else:
        assert (status, body["error"]) == (422, "validation_error")
        assert body["details"] == [{"field": "username", "message": body["message"]}]
    assert answer in str(body["message"])
    assert [user.username for user in await User.all()] == [first]


async def test_refusals_speak_chinese(client: Client) -> None:
    response = await client.post(
        "/api/register",
        json={"username": CYRILLIC_A + "lice", "password": PASSWORD},
        headers={"Accept-Language": "zh-CN"},
    )
    assert response.status_code == 422
    message = str((await response.get_json())["message"])
    assert "Username" not in message
    assert "文字" in message


async def test_concurrent_registrations_of_lookalikes_make_one_account(
    make_app: AppFactory,
) -> None:
    # Different keys, one skeleton: only the skeleton's unique index can decide.
    app = await make_app(ARGON2_MEMORY_COST=1024, ARGON2_TIME_COST=1)
    names = ["mary", "rnary", "al\u0131ce", "alice", "bi11", "bill"] * 3

    async with app.app_context():
        results = await asyncio.gather(
            *(accounts.register(name, PASSWORD, client="127.0.0.1") for name in names),
            return_exceptions=True,
        )

    assert sum(isinstance(result, User) for result in results) == 3
    assert sum(isinstance(result, UsernameTaken) for result in results) == len(names) - 3
    skeletons = {usernames.skeleton(user.username) for user in await User.all()}
    assert skeletons == {"rnary", "alice", "bill"}


@pytest.mark.parametrize(
    ("level", "name", "allowed"),
    [
        ("highly_restrictive", "Tokyo東京", True),  # Latin with Han is allowed
        ("highly_restrictive", "Moscow" + "Москва", False),
        ("moderately_restrictive", "Moscow" + "Москва", False),  # Cyrillic is never allowed
        ("moderately_restrictive", "Athens" + "Αθήνα", False),  # nor is Greek
        ("moderately_restrictive", "Bangkok" + "กรุงเทพ", True),  # Latin and Thai
        ("highly_restrictive", "Bangkok" + "กรุงเทพ", False),
        ("single_script", "Tokyo東京", False),
        ("ascii", "Zoë", False),
        ("unrestrictive", "Moscow" + "Москва", True),
    ],
)
async def test_restriction_level_is_tunable(
    make_app: AppFactory, level: str, name: str, allowed: bool
) -> None:
    app = await make_app(USERNAME_RESTRICTION_LEVEL=level)
    status, _ = await register_json(app.test_client(), name)
    assert status == (201 if allowed else 422)


async def test_an_unknown_restriction_level_stops_the_start(make_app: AppFactory) -> None:
    with pytest.raises(RuntimeError, match="USERNAME_RESTRICTION_LEVEL must be one of"):
        await make_app(USERNAME_RESTRICTION_LEVEL="strict")


@pytest.mark.parametrize(
    ("names", "groups"),
    [
        ([(1, "alice"), (2, "Alice"), (3, "al\u0131ce"), (4, "bob")], [[1, 2, 3]]),
        ([(1, "mary"), (2, "bob"), (3, "rnary"), (4, "b0b")], [[1, 3], [2, 4]]),
        ([(1, "alice"), (2, "alice" + HANGUL_FILLER)], [[1, 2]]),
        ([(1, "alice"), (2, "bob")], []),
    ],
)
def test_lookalike_groups(names: list[tuple[int, str]], groups: list[list[int]]) -> None:
    found = usernames.lookalike_groups(names)
    assert [[user_id for user_id, _ in group] for group in found] == groups
