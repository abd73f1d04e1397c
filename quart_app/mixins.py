"""Flask-Login's user classes: what the login layer expects of a user, and of nobody."""

from __future__ import annotations


class UserMixin:
    """Flask-Login's UserMixin: active by default, equal to another user of the same id."""

    __hash__ = object.__hash__
    is_active = True

    @property
    def is_authenticated(self) -> bool:
        return bool(self.is_active)

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        try:
            return str(self.id)  # type: ignore[attr-defined]
        except AttributeError:
            raise NotImplementedError("No `id` attribute - override `get_id`") from None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UserMixin):
            return self.get_id() == other.get_id()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal


class AnonymousUserMixin:
    """The user of a request that carries no valid session."""

    is_authenticated = False
    is_active = False
    is_anonymous = True
    username = ""

    def get_id(self) -> None:
        return None
