"""Database tables: the users, and the server-side sessions their cookies point at."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from .mixins import UserMixin

USERNAME_MAX = 32
# RFC 5321's limit on a forward path, which bounds every address that can receive mail.
EMAIL_MAX = 254


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
    credential_generation = fields.IntField(default=0, db_default=0)
    # Optional; email_key (the address casefolded) makes it unique regardless of case.
    email = fields.CharField(max_length=EMAIL_MAX, null=True)
    email_key = fields.CharField(max_length=EMAIL_MAX, null=True, unique=True)
    email_verified = fields.BooleanField(default=False, db_default=False)
    # The language the user's mails are written in: the one they registered or last
    # set their address in.
    locale = fields.CharField(max_length=8, default="en", db_default="en")

    sessions: fields.ReverseRelation[AuthSession]
    api_tokens: fields.ReverseRelation[ApiToken]
    recovery_tokens: fields.ReverseRelation[RecoveryToken]
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
    device = fields.CharField(max_length=160, default="", db_default="")
    credential_generation = fields.IntField(default=0, db_default=0)

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
    credential_generation = fields.IntField(default=0, db_default=0)

    class Meta:
        table = "api_tokens"


class TotpSecret(Model):
    """The secret of an authenticator app, encrypted. On once a first code was confirmed."""

    id = fields.IntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="totp", on_delete=fields.CASCADE
    )
    user_id: int
    # Fernet token of the base32 secret, under a key derived from SECRET_KEY.
    secret = fields.CharField(max_length=255)
    confirmed_at = fields.DatetimeField(null=True)
    # The last 30-second step whose code was accepted: no code is accepted twice.
    last_step = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "totp_secrets"


class RecoveryCode(Model):
    """A single-use code for a lost phone. Only its SHA-256 is stored."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="recovery_codes", on_delete=fields.CASCADE
    )
    user_id: int
    code_hash = fields.CharField(max_length=64)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "recovery_codes"
        unique_together = (("user_id", "code_hash"),)


class Passkey(Model):
    """A WebAuthn credential (discoverable, user-verified) that signs in on its own."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="passkeys", on_delete=fields.CASCADE
    )
    user_id: int
    name = fields.CharField(max_length=64)
    # base64url of the credential id the authenticator chose (at most 1023 bytes).
    credential_id = fields.CharField(max_length=1400, unique=True)
    public_key = fields.TextField()  # base64url of the COSE key
    sign_count = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "passkeys"


class PendingLogin(Model):
    """A login whose password passed and whose second factor has not, not a session yet."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="pending_logins", on_delete=fields.CASCADE
    )
    user_id: int
    remember = fields.BooleanField(default=False)
    next_url = fields.CharField(max_length=2048, default="")
    failures = fields.IntField(default=0)
    expires_at = fields.DatetimeField()
    credential_generation = fields.IntField(default=0)

    class Meta:
        table = "pending_logins"


class WebAuthnChallenge(Model):
    """A WebAuthn challenge, used once, for the browser session that holds its key."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    purpose = fields.CharField(max_length=16)
    user_id = fields.IntField(null=True)
    challenge = fields.CharField(max_length=128)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "webauthn_challenges"


class RecoveryToken(Model):
    """A mailed link (password reset or address verification), stored as its SHA-256."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="recovery_tokens", on_delete=fields.CASCADE
    )
    user_id: int
    purpose = fields.CharField(max_length=16)  # "reset" or "verify"
    token_hash = fields.CharField(max_length=64, unique=True)
    # verify: the address the link confirms; a change of address voids it.
    email_key = fields.CharField(max_length=EMAIL_MAX, null=True)
    # reset: the user's credential generation when sent; any password change voids it.
    credential_generation = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "recovery_tokens"
        indexes = (("user_id", "purpose"),)


class OutboxMail(Model):
    """A mail waiting to go out, written in the transaction of what caused it.

    due_at and lease_until are Unix times, compared in the claim's SQL on every database.
    """

    id = fields.IntField(primary_key=True)
    recipient = fields.CharField(max_length=EMAIL_MAX)
    template = fields.CharField(max_length=64)
    subject = fields.CharField(max_length=255)
    # The whole RFC 5322 message; emptied once sent, since it may hold a link.
    message = fields.TextField()
    status = fields.CharField(max_length=16, default="queued")  # queued, sending, sent, failed
    attempts = fields.IntField(default=0)
    due_at = fields.FloatField()
    lease_until = fields.FloatField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox"
        indexes = (("status", "due_at"),)
