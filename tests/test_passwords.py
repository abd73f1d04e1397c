"""Password hashing: argon2id parameters, off the event loop, NFKC, werkzeug hashes, rehash."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import argon2
import pytest
from quart import Quart
from werkzeug.security import generate_password_hash

from quart_app import accounts
from quart_app.models import User
from quart_app.passwords import PasswordHasher

from .conftest import PASSWORD, AppFactory

T = TypeVar("T")

ARGON2_PARAMETERS = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+$")
# OWASP's minimum for argon2id: 19 MiB, two passes, one lane.
OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
# The same method as Flask's default "pbkdf2:sha256", with fewer rounds to keep tests fast.
PBKDF2 = "pbkdf2:sha256:1000"
WERKZEUG_METHODS = ["scrypt", PBKDF2]
# Where the hashing libraries' Python frames live while they work.
ARGON2_CODE = f"{os.sep}argon2{os.sep}"
WERKZEUG_CODE = f"{os.sep}werkzeug{os.sep}"


def fullwidth(text: str) -> str:
    """text as typed on a full-width (CJK) keyboard: NFKC turns it back into ASCII."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


@pytest.fixture
def hasher(app: Quart) -> PasswordHasher:
    return cast(PasswordHasher, app.extensions["password_hasher"])


def threads_running(code: str) -> frozenset[tuple[int, str]]:
    """The threads whose stack is inside a file whose path contains `code`, right now."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    busy = set()
    for ident, frame in sys._current_frames().items():
        current: Any = frame
        while current is not None:
            if code in current.f_code.co_filename:
                busy.add((ident, names.get(ident, "?")))
                break
            current = current.f_back
    return frozenset(busy)


async def watch(work: Awaitable[T], code: str) -> tuple[T, int, list[frozenset[tuple[int, str]]]]:
    """Run work while another coroutine ticks and samples which threads run `code`."""
    task = asyncio.ensure_future(work)
    ticks = 0
    samples: list[frozenset[tuple[int, str]]] = []
    while not task.done():
        samples.append(threads_running(code))
        ticks += 1
        await asyncio.sleep(0.001)
    return task.result(), ticks, samples


@functools.cache
def werkzeug_hash(password: str, method: str) -> str:
    """A hash as a Flask app stored it; cached, since scrypt takes a tenth of a second."""
    return generate_password_hash(password, method)


def parameters(stored_hash: str) -> tuple[int, int, int]:
    match = ARGON2_PARAMETERS.match(stored_hash)
    assert match, f"not an argon2id v19 hash: {stored_hash!r}"
    memory, time, lanes = (int(value) for value in match.groups())
    return memory, time, lanes


async def test_hash_is_argon2id_with_at_least_owasp_parameters(hasher: PasswordHasher) -> None:
    stored = await hasher.hash(PASSWORD)

    memory, time, lanes = parameters(stored)
    assert memory >= OWASP_MEMORY_KIB
    assert time >= OWASP_TIME_COST
    assert lanes >= 1
    # A standard encoding: any argon2 implementation can check it.
    assert argon2.PasswordHasher().verify(stored, PASSWORD)


async def test_hash_is_salted(hasher: PasswordHasher) -> None:
    first, second = await hasher.hash(PASSWORD), await hasher.hash(PASSWORD)

    assert first != second
    assert await hasher.verify(first, PASSWORD)
    assert await hasher.verify(second, PASSWORD)


async def test_verify_refuses_a_wrong_password(hasher: PasswordHasher) -> None:
    stored = await hasher.hash(PASSWORD)

    assert await hasher.verify(stored, PASSWORD)
    assert not await hasher.verify(stored, PASSWORD + "!")
    assert not await hasher.verify(stored, PASSWORD.upper())


async def test_every_character_counts(hasher: PasswordHasher) -> None:
    password = "x" * 1023 + "a"
    stored = await hasher.hash(password)

    assert await hasher.verify(stored, password)
    assert not await hasher.verify(stored, "x" * 1023 + "b")


OperationFactory = Callable[[PasswordHasher, str], Awaitable[Any]]


async def _hash(hasher: PasswordHasher, stored: str) -> Any:
    return await hasher.hash(PASSWORD)


async def _verify(hasher: PasswordHasher, stored: str) -> Any:
    return await hasher.verify(stored, PASSWORD)


async def _dummy_verify(hasher: PasswordHasher, stored: str) -> Any:
    return await hasher.dummy_verify(PASSWORD)


@pytest.mark.parametrize(
    "operation", [_hash, _verify, _dummy_verify], ids=["hash", "verify", "dummy_verify"]
)
async def test_argon2_work_runs_on_the_hash_threads_and_leaves_the_loop_free(
    hasher: PasswordHasher, operation: OperationFactory
) -> None:
    stored = await hasher.hash(PASSWORD)

    _, ticks, samples = await watch(operation(hasher, stored), ARGON2_CODE)

    # Blocking the loop would let the ticking coroutine run once at most.
    assert ticks >= 5
    busy = frozenset().union(*samples)
    assert busy, "argon2 was never seen running"
    assert threading.get_ident() not in {ident for ident, _ in busy}
    assert all(name.startswith("password-hash") for _, name in busy)


@pytest.mark.parametrize("method", ["scrypt", "pbkdf2:sha256:100000"])
async def test_werkzeug_verify_leaves_the_loop_free(hasher: PasswordHasher, method: str) -> None:
    stored = werkzeug_hash(PASSWORD, method)

    matched, ticks, samples = await watch(hasher.verify(stored, PASSWORD), WERKZEUG_CODE)

    assert matched is True
    assert ticks >= 2
    busy = frozenset().union(*samples)
    assert busy, "werkzeug was never seen running"
    assert threading.get_ident() not in {ident for ident, _ in busy}
    # Its own thread, so the argon2 thread stays free for the other logins.
    assert all(name.startswith("legacy-hash") for _, name in busy)


@pytest.mark.parametrize("threads", [1, 2])
async def test_the_hash_pool_is_bounded(make_app: AppFactory, threads: int) -> None:
    app = await make_app(HASH_THREADS=threads)
    hasher = cast(PasswordHasher, app.extensions["password_hasher"])

    work = asyncio.gather(*(hasher.hash(f"{PASSWORD} {n}") for n in range(2 * threads + 1)))
    hashes, _, samples = await watch(work, ARGON2_CODE)

    assert len(set(hashes)) == 2 * threads + 1
    assert max(len(sample) for sample in samples) == threads
    assert len(frozenset().union(*samples)) == threads


@pytest.mark.parametrize(
    ("stored_as", "typed_as"),
    [
        (fullwidth("correct-horse1"), "correct-horse1"),  # full-width
        ("correct-horse1", fullwidth("correct-horse1")),
        ("caf\u00e9 au lait", "cafe\u0301 au lait"),  # composed, decomposed
        ("cafe\u0301 au lait", "caf\u00e9 au lait"),
        ("\u212bngstr\u00f6m-unit", "\u00c5ngstro\u0308m-unit"),  # angstrom sign
        ("\ufb01nal-ligature", "final-ligature"),
    ],
)
async def test_nfkc_forms_of_one_password_match(
    hasher: PasswordHasher, stored_as: str, typed_as: str
) -> None:
    stored = await hasher.hash(stored_as)

    assert await hasher.verify(stored, typed_as)
    assert not await hasher.verify(stored, typed_as + "x")


async def test_nfkc_is_applied_before_hashing_and_does_not_fold_case(
    hasher: PasswordHasher,
) -> None:
    stored = await hasher.hash(fullwidth("CORRECT-horse"))

    assert argon2.PasswordHasher().verify(stored, "CORRECT-horse")
    assert not await hasher.verify(stored, "correct-horse")


@pytest.mark.parametrize("method", WERKZEUG_METHODS)
@pytest.mark.parametrize("password", [PASSWORD, "pässwörd 密码 пароль 🔑"])
async def test_werkzeug_hashes_verify(hasher: PasswordHasher, method: str, password: str) -> None:
    stored = werkzeug_hash(password, method)
    assert stored.startswith(method.split(":")[0] + ":")

    assert await hasher.verify(stored, password) is True
    assert await hasher.verify(stored, password + "x") is False


@pytest.mark.parametrize("method", WERKZEUG_METHODS)
async def test_werkzeug_hashes_need_rehash(hasher: PasswordHasher, method: str) -> None:
    assert hasher.needs_rehash(werkzeug_hash(PASSWORD, method))


@pytest.mark.parametrize(
    "options",
    [
        {"time_cost": 3},
        {"time_cost": 1},
        {"memory_cost": 64 * 1024},
        {"parallelism": 2},
        {"type": argon2.Type.I},
        {"hash_len": 16},
    ],
    ids=str,
)
async def test_argon2_hashes_with_other_parameters_need_rehash(
    hasher: PasswordHasher, options: dict[str, Any]
) -> None:
    settings: dict[str, Any] = {"time_cost": 2, "memory_cost": OWASP_MEMORY_KIB, "parallelism": 1}
    settings.update(options)
    stored = argon2.PasswordHasher(**settings).hash(PASSWORD)

    assert hasher.needs_rehash(stored)


async def test_current_hashes_do_not_need_rehash(hasher: PasswordHasher) -> None:
    assert not hasher.needs_rehash(await hasher.hash(PASSWORD))
    # The same parameters from another argon2 user are just as current.
    elsewhere = argon2.PasswordHasher(time_cost=2, memory_cost=OWASP_MEMORY_KIB, parallelism=1)
    assert not hasher.needs_rehash(elsewhere.hash(PASSWORD))


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        PASSWORD,  # a password kept in plain text must not log anyone in
        "\x00",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        "$argon2id$v=19$m=19456,t=2,p=1$not base64!$not base64!",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$ü",
        "$argon2id$ü",
        "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "scrypt:",
        "scrypt:32768:8:1",
        "scrypt:x:8:1$salt$abcd",
        "scrypt:1:8:1$salt$abcd",
        "scrypt:99999999999999999999:8:1$salt$abcd",
        "pbkdf2:sha256:1000$salt$ü",
        "pbkdf2:sha256:0$salt$abcd",
        "pbkdf2:sha256:99999999999999999999$salt$abcd",
        "pbkdf2:no-such-digest:1000$salt$abcd",
        "pbkdf2:sha256:1000$salt$" + "0" * 64,
    ],
)
async def test_a_garbage_hash_verifies_false(hasher: PasswordHasher, stored: str) -> None:
    assert await hasher.verify(stored, PASSWORD) is False


@pytest.mark.parametrize("method", ["argon2id", *WERKZEUG_METHODS])
async def test_an_unencodable_password_verifies_false(hasher: PasswordHasher, method: str) -> None:
    # A lone surrogate: JSON can carry one ("\ud800"), UTF-8 cannot encode it.
    stored = (
        await hasher.hash(PASSWORD) if method == "argon2id" else werkzeug_hash(PASSWORD, method)
    )

    assert await hasher.verify(stored, PASSWORD + "\ud800") is False


@pytest.mark.parametrize("password", ["", PASSWORD, "x" * 1024])
async def test_dummy_verify_runs_argon2_every_time(hasher: PasswordHasher, password: str) -> None:
    # The first call makes the dummy hash; later ones must still do a full verify.
    for _ in range(2):
        _, _, samples = await watch(hasher.dummy_verify(password), ARGON2_CODE)
        assert frozenset().union(*samples), "dummy_verify did no argon2 work"


# Imported accounts cannot be told apart by the time of a wrong password

LEGACY_METHODS = {"pbkdf2": "pbkdf2:sha256:300000", "scrypt": "scrypt:32768:8:1"}
ROUNDS = 7


async def failure_rounds(app: Quart, usernames: list[str]) -> list[dict[str, float]]:
    """ROUNDS rounds of one wrong-password login for each of usernames, in turns.

    Each round's logins follow each other within a second, so a round is compared within
    itself: this machine's speed moves by a third from one minute to the next, which a
    comparison of the fastest try of each name over the whole run would take for the code.
    """
    rounds: list[dict[str, float]] = []
    async with app.app_context():
        for _ in range(ROUNDS):
            times: dict[str, float] = {}
            for name in usernames:
                started = time.perf_counter()
                with pytest.raises(accounts.InvalidCredentials):
                    await accounts.authenticate(name, PASSWORD + "!", client="127.0.0.1")
                times[name] = time.perf_counter() - started
            rounds.append(times)
    return rounds


async def test_a_wrong_password_costs_alike_for_imported_native_and_unknown(app: Quart) -> None:
    async with app.app_context():
        await accounts.register("native", PASSWORD, client="127.0.0.1")
    for name, method in LEGACY_METHODS.items():
        await User.create(
            username=name,
            username_key=name,
            password_hash=generate_password_hash(PASSWORD, method=method),
        )
        await failure_rounds(app, [name])  # the worker learns what the method costs

    rounds = await failure_rounds(app, [*LEGACY_METHODS, "native", "nobody"])

    # Without the padding a native or unknown name answers in a fifth of a pbkdf2 verify.
    spread = statistics.median(max(r.values()) / min(r.values()) for r in rounds)
    assert spread <= 1.25, rounds


async def test_a_legacy_verify_does_not_hold_the_hash_thread(app: Quart) -> None:
    hasher = cast(PasswordHasher, app.extensions["password_hasher"])
    legacy = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000000")
    finished: list[str] = []

    async def verify_legacy() -> None:
        await hasher.verify(legacy, PASSWORD + "!")
        finished.append("legacy")

    async def hash_native() -> None:
        await asyncio.sleep(0.01)  # the legacy verify is under way first
        await hasher.hash(PASSWORD)
        finished.append("native")

    await asyncio.gather(verify_legacy(), hash_native())
    assert finished == ["native", "legacy"]
