"""The mail transport: SMTP to a real server, .eml files without one; the mail settings."""

from __future__ import annotations

import logging
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from quart import Quart

from quart_app import create_app, mail
from quart_app.config import ConfigError

from .conftest import AppFactory, base_config
from .smtp_server import SmtpServer, html_of, smtp_fixture, text_of  # noqa: F401


def message() -> EmailMessage:
    return mail.build(
        "quart_app <noreply@example.com>",
        "ada@example.com",
        "Hello",
        "Open https://example.com/x\n",
        "<p><a href='https://example.com/x'>x</a></p>",
        "example.com",
    )


async def test_smtp_delivers_text_and_html(make_app: AppFactory, smtp: SmtpServer) -> None:
    app = await make_app(MAIL_URL=smtp.url)
    await mail.deliver(app, message())
    (received,) = smtp.inbox.wait_for("ada@example.com")
    assert received["Subject"] == "Hello"
    assert "https://example.com/x" in text_of(received)
    assert "<a href" in html_of(received)


async def test_a_server_that_is_down_raises_a_retryable_error(
    make_app: AppFactory, smtp: SmtpServer
) -> None:
    app = await make_app(MAIL_URL=smtp.url, MAIL_TIMEOUT=5)
    smtp.stop()
    with pytest.raises(Exception) as raised:  # noqa: PT011  (whatever the socket says)
        await mail.deliver(app, message())
    assert not isinstance(raised.value, mail.PermanentFailure)


async def test_without_a_mail_url_an_eml_file_and_the_link_in_the_log(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="quart_app.mail"):
        await mail.deliver(app, message())
    (path,) = (Path(app.instance_path) / "outbox").glob("*.eml")
    written = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert written["To"] == "ada@example.com"
    assert "link: https://example.com/x" in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example:2525", ("mail.example", 2525, None, None, False)),
        ("smtps://u%40x:p%2Fw@mail.example", ("mail.example", 465, "u@x", "p/w", True)),
        ("smtp://mail.example", ("mail.example", 587, None, None, False)),
    ],
)
def test_mail_urls(url: str, expected: tuple[object, ...]) -> None:
    server = mail.SmtpServer.from_url(url)
    got = (server.hostname, server.port, server.username, server.password, server.implicit_tls)
    assert got == expected


def test_production_with_mail_needs_a_public_url() -> None:
    config = base_config(ENV="production", MAIL_URL="smtp://mail.example:587")
    with pytest.raises(ConfigError, match="QUART_PUBLIC_URL"):
        create_app(config)
    app = create_app({**config, "PUBLIC_URL": "https://example.com/"})
    assert app.config["PUBLIC_URL"] == "https://example.com"


@pytest.mark.parametrize(
    "overrides",
    [{"PUBLIC_URL": "example.com"}, {"PUBLIC_URL": ""}, {"MAIL_URL": "http://mail.example"}],
)
def test_bad_mail_settings_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        create_app(base_config(**overrides))
