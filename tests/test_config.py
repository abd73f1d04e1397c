"""Configuration: the secret key, production settings and the QUART_* environment."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from hypercorn.config import Config
from quart import Quart

from quart_app import create_app
from quart_app.config import ConfigError
from quart_app.throttle import Throttle

from .conftest import PASSWORD, AppFactory, base_config, csrf_token

ENV_SECRET = "a-secret-from-the-environment-0123456789abcdef"


@pytest.fixture
def instance(no_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty instance folder that create_app() will use."""
    path = tmp_path / "instance"
    monkeypatch.setenv("QUART_INSTANCE_PATH", str(path))
    return path


def test_development_generates_a_private_secret_once(instance: Path) -> None:
    app = create_app()

    key_file = instance / "secret_key"
    assert app.config["ENV"] == "development"
    assert key_file.read_text().strip() == app.config["SECRET_KEY"]
    assert len(app.config["SECRET_KEY"]) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(path.name for path in instance.iterdir() if "secret" in path.name) == [
        "secret_key"
    ]

    assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]


def test_each_instance_gets_its_own_secret(
    instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = create_app().config["SECRET_KEY"]
    monkeypatch.setenv("QUART_INSTANCE_PATH", str(tmp_path / "other"))

    assert create_app().config["SECRET_KEY"] != first


@pytest.mark.parametrize("env", ["development", "production"])
def test_secret_key_from_the_environment(
    instance: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv("QUART_ENV", env)
    monkeypatch.setenv("QUART_SECRET_KEY", ENV_SECRET)

    app = create_app()

    assert app.config["SECRET_KEY"] == ENV_SECRET
    assert not (instance / "secret_key").exists()


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_production_refuses_to_start_without_a_secret(
    instance: Path, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("QUART_ENV", "production")
    if secret is not None:
        monkeypatch.setenv("QUART_SECRET_KEY", secret)

    with pytest.raises(ConfigError, match="QUART_SECRET_KEY"):
        create_app()
    assert not (instance / "secret_key").exists()


@pytest.mark.parametrize("secret", ["a", "x" * 31, "密" * 10], ids=["one", "31", "30-bytes-cjk"])
def test_production_refuses_a_short_secret(
    instance: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("QUART_ENV", "production")
    monkeypatch.setenv("QUART_SECRET_KEY", secret)

    with pytest.raises(ConfigError, match="QUART_SECRET_KEY must be at least 32 bytes"):
        create_app()


def test_a_short_secret_is_allowed_in_development(
    instance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUART_SECRET_KEY", "a")

    assert create_app().config["SECRET_KEY"] == "a"


def test_production_cookies_are_host_prefixed_and_secure(
    instance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUART_ENV", "production")
    monkeypatch.setenv("QUART_SECRET_KEY", ENV_SECRET)

    config = create_app().config

    assert config["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert config["AUTH_COOKIE_NAME"].startswith("__Host-")
    assert config["PENDING_COOKIE_NAME"] == "__Host-quart_app_pending"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_DOMAIN"] in (None, False)
    assert config["SESSION_COOKIE_PATH"] in (None, "/")


def test_development_cookies_work_over_http(instance: Path) -> None:
    config = create_app().config

    assert not config["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert not config["AUTH_COOKIE_NAME"].startswith("__Host-")
    assert config["SESSION_COOKIE_SECURE"] is False


def cookie_attributes(header: str) -> tuple[str, dict[str, str]]:
    name_value, *attributes = (part.strip() for part in header.split(";"))
    parsed = {}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        parsed[key.lower()] = value
    return name_value.partition("=")[0], parsed


async def https_register(app: Quart) -> None:
    client = app.test_client()
    page = await client.get("/register/", scheme="https")
    form = {
        "username": "alice",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": csrf_token(await page.get_data(as_text=True)),
    }
    response = await client.post("/register/", form=form, scheme="https")
    assert response.status_code in (302, 303)


async def test_production_login_sets_host_cookies_over_https(make_app: AppFactory) -> None:
    app = await make_app(ENV="production")
    await https_register(app)
    client = app.test_client()

    page = await client.get("/login/", scheme="https")
    form = {
        "username": "alice",
        "password": PASSWORD,
        "csrf_token": csrf_token(await page.get_data(as_text=True)),
    }
    response = await client.post("/login/", form=form, scheme="https")

    assert response.status_code in (302, 303)
    headers = page.headers.getlist("Set-Cookie") + response.headers.getlist("Set-Cookie")
    names = set()
    for header in headers:
        name, attributes = cookie_attributes(header)
        names.add(name)
        assert name.startswith("__Host-"), header
        assert "secure" in attributes, header
        assert "httponly" in attributes, header
        assert attributes.get("path") == "/", header
        assert "domain" not in attributes, header
        assert attributes.get("samesite", "").lower() in ("lax", "strict"), header
    assert app.config["AUTH_COOKIE_NAME"] in names


async def test_database_url_and_rate_limiter_from_the_environment(
    instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "elsewhere.sqlite3"
    monkeypatch.setenv("QUART_DATABASE_URL", f"sqlite://{database}")
    monkeypatch.setenv("QUART_RATE_LIMITER_ENABLED", "false")

    app = create_app()

    assert app.config["DATABASE_URL"] == f"sqlite://{database}"
    assert app.config["RATE_LIMITER_ENABLED"] is False
    throttle: Throttle = app.extensions["throttle"]
    assert throttle.enabled is False
    async with app.test_app():
        assert database.exists()
    assert not (instance / "quart_app.sqlite3").exists()


def test_rate_limiter_is_on_by_default(instance: Path) -> None:
    app = create_app()

    assert app.config["RATE_LIMITER_ENABLED"] is True
    assert app.extensions["throttle"].enabled is True


async def test_default_database_is_a_sqlite_file_in_the_instance_folder(instance: Path) -> None:
    app = create_app()

    database = instance / "quart_app.sqlite3"
    assert app.config["DATABASE_URL"] == f"sqlite://{database}"
    # Tables are created on start: nothing to do by hand.
    async with app.test_app():
        assert database.exists()
        response = await app.test_client().get("/register/")
        assert response.status_code == 200


@pytest.mark.parametrize("env", ["prod", "Production", "dev", "", "null"])
def test_unknown_environment_is_refused(
    instance: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv("QUART_ENV", env)
    monkeypatch.setenv("QUART_SECRET_KEY", ENV_SECRET)

    with pytest.raises(ConfigError, match="QUART_ENV"):
        create_app()


@pytest.mark.parametrize("value", ["weak", "Strong", "true", "1"])
def test_unknown_session_protection_is_refused_from_the_environment(
    instance: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("QUART_SESSION_PROTECTION", value)

    with pytest.raises(ConfigError, match="SESSION_PROTECTION"):
        create_app()


@pytest.mark.parametrize("value", ["weak", "Strong", "", True, 1])
def test_unknown_session_protection_is_refused_in_test_config(value: Any) -> None:
    with pytest.raises(ConfigError, match="SESSION_PROTECTION"):
        create_app(base_config(SESSION_PROTECTION=value))


@pytest.mark.parametrize(("value", "expected"), [("null", None), ("basic", "basic")])
def test_session_protection_from_the_environment(
    instance: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("QUART_SESSION_PROTECTION", value)

    assert create_app().config["SESSION_PROTECTION"] == expected


def test_session_protection_defaults_to_strong(instance: Path) -> None:
    """As the tutorial sets it on the manager; the configuration overrides it only when set."""
    app = create_app()
    assert "SESSION_PROTECTION" not in app.config
    assert app.extensions["login_manager"].session_protection == "strong"


def test_public_url_and_key_fallbacks(instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = create_app().config
    assert config["PUBLIC_URL"] == "http://localhost:8000"
    assert config["SECRET_KEY_FALLBACKS"] == []
    monkeypatch.setenv("QUART_PUBLIC_URL", "https://example.com")
    monkeypatch.setenv("QUART_SECRET_KEY_FALLBACKS", '["an-old-key"]')
    config = create_app().config
    assert config["PUBLIC_URL"] == "https://example.com"
    assert config["SECRET_KEY_FALLBACKS"] == ["an-old-key"]


def test_hypercorn_config_times_out_silent_connections_but_keeps_sockets() -> None:
    config = Config.from_toml(str(Path(__file__).resolve().parent.parent / "hypercorn.toml"))

    assert config.read_timeout is not None
    assert 0 < config.read_timeout <= 60
    # Idle WebSockets answer pings in time, or read_timeout would close them.
    assert config.websocket_ping_interval is not None
    assert config.websocket_ping_interval < config.read_timeout
    assert config.keep_alive_timeout <= 10
    assert config.ssl_handshake_timeout <= 10
