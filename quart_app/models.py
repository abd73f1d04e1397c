"""Database tables: the users, and the server-side sessions their cookies point at."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from .mixins import UserMixin

USERNAME_MAX = 32


class User(UserMixin, Model):
    """An account: username is shown as typed, username_key makes it unique by case."""

    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=USERNAME_MAX)
    username_key = fields.CharField(max_length=4 * USERNAME_MAX, unique=True)
    # SHA-256 of the name's UTS #39 skeleton: two names that look alike cannot both exist.
    # None for the younger of look-alike names that existed before the rule.
    username_skeleton = fields.CharField(max_length=64, unique=True, null=True)
    password_hash = fields.CharField(max_length=512)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Raised by every password change, reset and disable; a session or token made under an
    # older value is dead, however a login raced the change.
    credential_generation = fields.IntField(default=0)

    sessions: fields.ReverseRelation[AuthSession]
    api_tokens: fields.ReverseRelation[ApiToken]
    # The token that authenticated this request, when a program sent one.
    api_token: ApiToken | None = None

    class Meta:
        table = "users"

    def __str__(self) -> str:
        return self.username


class AuthSession(Model):
    """A login: the cookie holds a random key, the table only its SHA-256."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    user_id: int
    created_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    remember = fields.BooleanField(default=False)
    fresh = fields.BooleanField(default=True)
    fingerprint = fields.CharField(max_length=128)
    ip = fields.CharField(max_length=45)
    user_agent = fields.CharField(max_length=512)
    # The browser and system read from user_agent once, at login, tab-separated.
    device = fields.CharField(max_length=160, default="")
    credential_generation = fields.IntField(default=0)

    class Meta:
        table = "sessions"
        indexes = (("user_id", "last_seen_at"),)


class ApiToken(Model):
    """A named bearer token for programs. Like a session key, only its SHA-256 is stored."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_tokens", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=64)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    credential_generation = fields.IntField(default=0)

    class Meta:
        table = "api_tokens"
