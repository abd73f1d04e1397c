"""Mail transport: SMTP through aiosmtplib, or .eml files in the instance folder.

aiosmtplib is the asyncio SMTP client that is kept up to date (typed, STARTTLS and implicit
TLS, timeouts); the standard library's smtplib would block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib
from quart import Quart

logger = logging.getLogger(__name__)

OUTBOX_FOLDER = "outbox"
LINK = re.compile(r"https?://\S+")


class PermanentFailure(Exception):
    """The mail server refused the mail for good (a 5xx answer): trying again is useless."""


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """smtp://[user:pass@]host:port (STARTTLS when offered) or smtps://... (TLS)."""
        parts = urlsplit(url)
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname or "localhost",
            port=parts.port or (465 if implicit_tls else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit_tls,
        )


def build(
    sender: str, recipient: str, subject: str, text: str, html: str, domain: str
) -> EmailMessage:
    """A multipart/alternative message: the text part first, the HTML part preferred."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    # The same id on every retry lets a receiving server drop a copy it already has.
    message["Message-ID"] = make_msgid(secrets.token_hex(8), domain=domain)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


async def deliver(app: Quart, message: EmailMessage) -> None:
    """Send message through QUART_MAIL_URL, or write it to instance/outbox/ without one.

    Raises PermanentFailure when the server refuses it for good; any other exception is
    a failure worth retrying (server down, timeout, 4xx).
    """
    url = app.config["MAIL_URL"]
    if not url:
        await asyncio.to_thread(_write_file, Path(app.instance_path) / OUTBOX_FOLDER, message)
        return
    server = SmtpServer.from_url(str(url))
    try:
        await aiosmtplib.send(
            message,
            sender=parseaddr(str(message["From"]))[1],
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=False if server.implicit_tls else None,  # None: when offered
            timeout=float(app.config["MAIL_TIMEOUT"]),
        )
    except aiosmtplib.SMTPResponseException as error:
        if error.code >= 500:
            raise PermanentFailure(f"{error.code} {error.message}") from error
        raise


def _write_file(folder: Path, message: EmailMessage) -> None:
    """Development without a mail server: an .eml file, and its links in the log."""
    folder.mkdir(parents=True, exist_ok=True)
    msgid = str(message["Message-ID"]).strip("<>").split("@")[0]
    path = folder / f"{msgid}.eml"
    path.write_bytes(message.as_bytes())
    text = message.get_body(preferencelist=("plain",))
    links = LINK.findall(text.get_content() if text is not None else "")
    logger.warning(
        "mail to %s written to %s (no QUART_MAIL_URL)%s",
        message["To"],
        path,
        "".join(f"\n    link: {link}" for link in links),
    )
