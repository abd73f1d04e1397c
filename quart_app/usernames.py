"""The username rule: RFC 8265 (PRECIS) usernames and UTS #39 look-alike skeletons.

Pure functions, with no app or database, so the migration and the commands share them with
`accounts.clean_username`, which turns a refusal into the form's or the API's 400.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import precis_i18n
from precis_i18n.profile import Profile

from .i18n import _l
from .models import USERNAME_MAX

if TYPE_CHECKING:
    import icu

USERNAME_MIN = 2
USERNAME_PUNCTUATION = frozenset("_-.")
# ICU's restriction levels (UTS #39 section 5.2), by the names of the configuration: each
# the name of its icu.URestrictionLevel. ICU itself (13 MiB in each worker) is loaded by the
# first name checked, not by every process that starts the app.
RESTRICTION_LEVELS = {
    "ascii": "ASCII",
    "single_script": "SINGLE_SCRIPT_RESTRICTIVE",
    "highly_restrictive": "HIGHLY_RESTRICTIVE",
    "moderately_restrictive": "MODERATELY_RESTRICTIVE",
    "minimally_restrictive": "MINIMALLY_RESTRICTIVE",
    "unrestrictive": "UNRESTRICTIVE",
}
DEFAULT_RESTRICTION_LEVEL = "highly_restrictive"
# ICU's USPOOF_HIDDEN_OVERLAY, which PyICU's USpoofChecks does not name: a dot above that
# disappears into the dot of an i or j ("i" + U+0307 looks like "i").
HIDDEN_OVERLAY = 256
# What PRECIS refuses because it cannot be seen (RFC 8264 sections 9.13 and 9.14).
INVISIBLE_REASONS = frozenset(
    {"precis_ignorable_properties", "controls", "zero_width_joiner", "zero_width_nonjoiner"}
)

BAD_LENGTH = _l("Username must be %(min)d to %(max)d characters long.")
BAD_CHARACTERS = _l("Username may contain only letters, digits, '_', '-' and '.'.")
INVISIBLE = _l("Username must not contain invisible or control characters.")
MIXED_SCRIPTS = _l(
    "Username must not mix letters or digits of different scripts (such as Latin and Cyrillic)."
)


class RefusedUsername(ValueError):
    """The rule refuses a name; message says why, in the request's language."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Username:
    """A name that passed the rule: as shown, its uniqueness key, and its skeleton's digest."""

    shown: str
    key: str
    skeleton: str


def clean(raw: str, level: str = DEFAULT_RESTRICTION_LEVEL) -> Username:
    """Apply the rule to raw, or raise RefusedUsername."""
    shown = _enforce(_profile("UsernameCasePreserved"), raw)
    if not USERNAME_MIN <= len(shown) <= USERNAME_MAX:
        raise RefusedUsername(BAD_LENGTH % {"min": USERNAME_MIN, "max": USERNAME_MAX})
    for position, char in enumerate(shown):
        category = unicodedata.category(char)
        allowed = (
            category[0] == "L"
            or category == "Nd"
            or char in USERNAME_PUNCTUATION
            # Combining marks belong to letters in many scripts (Devanagari, Thai, ...).
            or (category[0] == "M" and position > 0)
        )
        if not allowed:
            raise RefusedUsername(BAD_CHARACTERS)
    import icu  # loaded by the first name checked (RESTRICTION_LEVELS)

    checks = _checker(level).check(shown)
    if checks & (icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS):
        raise RefusedUsername(MIXED_SCRIPTS)
    if checks & (icu.USpoofChecks.INVISIBLE | HIDDEN_OVERLAY):
        raise RefusedUsername(INVISIBLE)
    return Username(shown, key(shown), skeleton_digest(shown))


def key(name: str) -> str:
    """The PRECIS UsernameCaseMapped form: two names that differ only by case or width share it.

    Raises RefusedUsername when the profile refuses name.
    """
    return _enforce(_profile("UsernameCaseMapped"), name)


def skeleton(name: str) -> str:
    """The UTS #39 skeleton of name as shown, lower-cased and taken again.

    "alice", "Alice", "AIice" (capital i), "\u0430lice" (Cyrillic a) and "al\u0131ce"
    (dotless i) share one. Names that differ only by case share the key, so need not share it.
    """
    checker = _checker(DEFAULT_RESTRICTION_LEVEL)
    return str(checker.getSkeleton(0, checker.getSkeleton(0, name).lower()))


def skeleton_digest(name: str) -> str:
    """What the users table stores: a skeleton may be many times longer than its name."""
    return hashlib.sha256(skeleton(name).encode(errors="surrogatepass")).hexdigest()


def legacy_key(name: str) -> str:
    """The key of the rule before PRECIS (NFKC and case folding); older rows hold it."""
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    return unicodedata.normalize("NFKC", folded)


def lookalike_groups(names: Iterable[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Groups of (id, name) sharing a skeleton, in the order given (oldest first)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for user_id, name in names:
        groups.setdefault(skeleton(name), []).append((user_id, name))
    return [group for group in groups.values() if len(group) > 1]


def _enforce(profile: Profile, raw: str) -> str:
    try:
        return str(profile.enforce(raw))
    except UnicodeEncodeError as error:
        # precis_i18n names the rule in the reason: "DISALLOWED/precis_ignorable_properties".
        rule = error.reason.rpartition("/")[2]
        if rule == "empty":
            raise RefusedUsername(BAD_LENGTH % {"min": USERNAME_MIN, "max": USERNAME_MAX}) from None
        raise RefusedUsername(INVISIBLE if rule in INVISIBLE_REASONS else BAD_CHARACTERS) from None


@cache
def _profile(name: str) -> Profile:
    return precis_i18n.get_profile(name)


@cache
def _checker(level: str) -> icu.SpoofChecker:
    import icu

    checker = icu.SpoofChecker()
    checker.setRestrictionLevel(getattr(icu.URestrictionLevel, RESTRICTION_LEVELS[level]))
    return checker
