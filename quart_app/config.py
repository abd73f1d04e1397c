"""Configuration: defaults in code, secrets and deployment settings from the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from quart import Quart

from .login import LOGIN_DEFAULTS
from .usernames import DEFAULT_RESTRICTION_LEVEL, RESTRICTION_LEVELS

DEVELOPMENT_PUBLIC_URL = "http://localhost:8000"

DEFAULTS: dict[str, Any] = {
    **LOGIN_DEFAULTS,
    "ENV": "development",
    "SECRET_KEY": None,
    "DATABASE_URL": None,  # None: sqlite file in the instance folder
    "DATABASE_POOL_SIZE": 10,
    "REDIS_URL": None,
    "RATE_LIMITER_ENABLED": True,
    "TRUSTED_PROXIES": 0,
    # Flask-Login's SESSION_PROTECTION, when set, overrides login_manager.session_protection.
    "ARGON2_TIME_COST": 2,
    "ARGON2_MEMORY_COST": 19 * 1024,
    "ARGON2_PARALLELISM": 1,
    # Per worker. Hypercorn runs about one worker per core, so one thread each keeps the
    # cores busy without hashes queueing behind each other for CPU (see docs/benchmarks.md).
    "HASH_THREADS": 1,
    # Per worker: werkzeug hashes of imported accounts are verified on these, not the above.
    "LEGACY_HASH_THREADS": 1,
    # Failures from clients without a device cookie of the account, all of them together.
    "LOGIN_FAILURES_PER_ACCOUNT": "10/15 minutes",
    # Failures from one client holding a device cookie of the account (it logged in before).
    "LOGIN_FAILURES_PER_DEVICE": "10/15 minutes",
    "LOGIN_ATTEMPTS_PER_ADDRESS": "60/minute",
    "REGISTRATIONS_PER_ADDRESS": "10/hour",
    # Per-address limits count the network of this prefix length the address belongs to.
    "THROTTLE_IPV4_PREFIX": 32,
    "THROTTLE_IPV6_PREFIX": 64,
    # None: "redis" when REDIS_URL is set, else "file" (instance/throttle.sqlite3, shared by
    # the workers of this machine); "memory" counts in each process alone.
    "RATE_LIMIT_STORAGE": None,
    "DEVICE_COOKIE_NAME": "quart_app_device",
    "DEVICE_COOKIE_DURATION": 365 * 24 * 3600,
    # UTS #39's restriction level for new usernames: how scripts may mix in one name.
    "USERNAME_RESTRICTION_LEVEL": DEFAULT_RESTRICTION_LEVEL,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_NAME": "quart_app_session",
    # Older secret keys, newest first, after a rotation: TOTP secrets encrypted under them
    # are still read (and encrypted again under SECRET_KEY); Quart's session cookie and
    # Quart-Auth's login cookie signed with them are still accepted too.
    "SECRET_KEY_FALLBACKS": [],
    "PENDING_COOKIE_NAME": "quart_app_pending",
    # The site's origin as browsers see it: links in mails, the passkeys' relying party.
    "PUBLIC_URL": DEVELOPMENT_PUBLIC_URL,
    # smtp://[user:pass@]host:port (STARTTLS when offered) or smtps://...; None: in
    # development and tests, mails are written to instance/outbox/ as .eml files.
    "MAIL_URL": None,
    "MAIL_FROM": "quart_app <noreply@localhost>",
    "MAIL_TIMEOUT": 30,  # seconds for one SMTP conversation
    # Each worker looks for due mails this often (seconds), and at once after queueing one;
    # 0: no background sender (the `mail send` command, or tests, send).
    "MAIL_POLL_INTERVAL": 1.0,
    # A failed send is tried again after MAIL_RETRY_BASE * 2**(attempts - 1) seconds, at
    # most MAIL_RETRY_MAX, and given up (kept as failed, with its error) after
    # MAIL_MAX_ATTEMPTS: about 3 hours of a mail server being down by default.
    "MAIL_RETRY_BASE": 10.0,
    "MAIL_RETRY_MAX": 900.0,
    "MAIL_MAX_ATTEMPTS": 16,
    # A claimed mail not marked sent by then (its worker died) is claimed again.
    "MAIL_LEASE": 120.0,
    "PASSWORD_RESETS_PER_ADDRESS": "10/hour",
    # Past it, the account's reset requests get the ordinary answer and no mail.
    "PASSWORD_RESETS_PER_ACCOUNT": "3/hour",
    "PASSWORD_RESET_LIFETIME": 3600,
    "EMAIL_VERIFY_LIFETIME": 48 * 3600,
}

ENVIRONMENTS = ("development", "production", "testing")
# A shorter key can be found from one signed cookie by trying keys offline.
SECRET_KEY_MIN_BYTES = 32


class ConfigError(RuntimeError):
    """The configuration cannot serve: the message names what is missing or wrong."""


def load_config(app: Quart, test_config: Mapping[str, Any] | None = None) -> None:
    """Fill app.config from defaults, the QUART_* environment and test overrides."""
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config.from_prefixed_env("QUART")
    else:
        app.config.update({"ENV": "testing", "TESTING": True})
        app.config.update(test_config)

    env = app.config["ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"QUART_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    production = env == "production"

    if app.config["DATABASE_URL"] is None:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite://{Path(app.instance_path) / 'quart_app.sqlite3'}"
    app.config["SECRET_KEY"] = _secret_key(app, production)

    app.config["SESSION_COOKIE_SECURE"] = production
    if production:
        # __Host- cookies must be Secure, Path=/ and carry no Domain.
        app.config["SESSION_COOKIE_NAME"] = "__Host-" + app.config["SESSION_COOKIE_NAME"]
        app.config["AUTH_COOKIE_NAME"] = "__Host-" + app.config["AUTH_COOKIE_NAME"]
        app.config["DEVICE_COOKIE_NAME"] = "__Host-" + app.config["DEVICE_COOKIE_NAME"]
        app.config["PENDING_COOKIE_NAME"] = "__Host-" + app.config["PENDING_COOKIE_NAME"]
    if app.config.get("SESSION_PROTECTION") not in (None, "basic", "strong"):
        raise ConfigError('SESSION_PROTECTION must be None, "basic" or "strong"')
    if app.config["USERNAME_RESTRICTION_LEVEL"] not in RESTRICTION_LEVELS:
        raise ConfigError(
            f"USERNAME_RESTRICTION_LEVEL must be one of {', '.join(RESTRICTION_LEVELS)}"
        )
    _check_mail(app, production)


def _check_mail(app: Quart, production: bool) -> None:
    """Links in mails need the site's real origin: never guessed from a request's Host."""
    public_url = str(app.config["PUBLIC_URL"] or "").rstrip("/")
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"QUART_PUBLIC_URL must be an http(s) URL, not {public_url!r}")
    app.config["PUBLIC_URL"] = public_url
    mail_url = app.config["MAIL_URL"]
    if mail_url and urlsplit(str(mail_url)).scheme not in ("smtp", "smtps"):
        raise ConfigError("QUART_MAIL_URL must start with smtp:// or smtps://")
    if production and mail_url and public_url == DEVELOPMENT_PUBLIC_URL:
        raise ConfigError(
            "QUART_PUBLIC_URL must be set (e.g. https://example.com) when QUART_ENV=production"
            " and QUART_MAIL_URL is set: it is the origin of the links in mails"
        )


def _secret_key(app: Quart, production: bool) -> str:
    key = app.config["SECRET_KEY"]
    if key and production and len(str(key).encode()) < SECRET_KEY_MIN_BYTES:
        raise ConfigError(
            f"QUART_SECRET_KEY must be at least {SECRET_KEY_MIN_BYTES} bytes long when"
            " QUART_ENV=production (e.g. python3 -c 'import secrets;"
            " print(secrets.token_urlsafe(48))')"
        )
    if key:
        return str(key)
    if production:
        raise ConfigError("QUART_SECRET_KEY must be set when QUART_ENV=production")
    return _instance_secret(Path(app.instance_path) / "secret_key")


def _instance_secret(path: Path) -> str:
    """Read the development secret, creating it once so every worker and restart shares it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write a private temporary file, then link it into place: link fails if another
        # worker won the race, and nobody ever reads a half-written key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
