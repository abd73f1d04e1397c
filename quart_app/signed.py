"""Signed cookies, each verified once per worker: Quart-Auth's login cookie, Quart's session.

A browser sends the same two signed cookies with every request, and checking a signature
again gives the same answer: each worker keeps the answer for the exact token, salt and
signing keys, and checks only its age again (the age is what changes). Only a token that
verified is kept, at most `SIZE` of them, the least recently used going first. Quart's
session is handed out as a copy, so a request that changes it changes nothing kept here.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, cast

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from quart import Quart
from quart.sessions import SecureCookieSession, SecureCookieSessionInterface
from quart.wrappers import BaseRequestWebsocket

SIZE = 4096

Keys = tuple[str, ...]
Found = tuple[str, str | bytes | None, Keys]  # token, salt, keys


class Verified:
    """What verified tokens carried and when they were signed, by token, salt and keys."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._seen: OrderedDict[Found, tuple[Any, int]] = OrderedDict()

    def loads(
        self,
        serializer: Callable[[], URLSafeTimedSerializer],
        salt: str | bytes | None,
        keys: Sequence[str],
        token: str,
        max_age: int | None,
    ) -> Any:
        """serializer().loads(token, max_age=max_age), the signature checked once per worker.

        serializer() signs with salt and keys. Raises what itsdangerous raises: BadSignature,
        or SignatureExpired when the token is too old.
        """
        found_key = (token, salt, tuple(keys))
        found = self._seen.get(found_key)
        if found is None:
            value, signed_at = serializer().loads(token, max_age=max_age, return_timestamp=True)
            found = (value, int(signed_at.timestamp()))
            self._seen[found_key] = found
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(found_key)
        value, signed_at = found
        # itsdangerous's own test, on the timestamp it read from the token.
        age = int(time.time()) - signed_at
        if max_age is not None and (age > max_age or age < 0):
            raise SignatureExpired(f"Signature age {age} > {max_age} seconds", payload=value)
        return value

    def __len__(self) -> int:
        return len(self._seen)


def signing_keys(app: Quart) -> list[str]:
    """The app's secret keys as itsdangerous takes them: older ones first, the current last."""
    return cast(list[str], [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key])


class CookieSessionInterface(SecureCookieSessionInterface):
    """Quart's signed cookie session, its signature verified once per worker and cookie."""

    def __init__(self) -> None:
        self.verified = Verified()
        self._serializer: tuple[Keys, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Quart) -> URLSafeTimedSerializer | None:
        """Quart's serializer, made once per set of keys rather than per open and save."""
        return self._signing(app)[1]

    def _signing(self, app: Quart) -> tuple[Keys, URLSafeTimedSerializer | None]:
        keys = tuple(signing_keys(app))
        if self._serializer is None or self._serializer[0] != keys:
            self._serializer = (keys, super().get_signing_serializer(app))
        return self._serializer

    async def open_session(
        self, app: Quart, request: BaseRequestWebsocket
    ) -> SecureCookieSession | None:
        keys, serializer = self._signing(app)
        if serializer is None:
            return None  # no secret key, as Quart's own
        cookie = request.cookies.get(self.get_cookie_name(app))
        if cookie is None:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data = self.verified.loads(lambda: serializer, self.salt, keys, cookie, max_age)
        except BadSignature:
            return self.session_class()
        return self.session_class(copy.deepcopy(data))


def init_app(app: Quart) -> None:
    app.session_interface = CookieSessionInterface()
