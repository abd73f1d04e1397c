"""The outbox: mails are rows written with what caused them, sent by each worker's sender.

A mail is claimed by one UPDATE that marks it `sending` (with `FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite runs one writer at a time), so several workers never send it twice. A
failure puts it back, due again after a backoff; after MAIL_MAX_ATTEMPTS it stays `failed`
with its last error. `quart --app quart_app mail status` shows what waits or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_string, policy
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

import click
from quart import Quart, after_this_request, current_app, has_request_context
from quart.typing import ResponseTypes
from tortoise.connection import get_connection
from tortoise.exceptions import BaseORMException

from . import mail
from .cli import run
from .errors import DATABASE_ERRORS
from .i18n import DEFAULT, LANGUAGES, in_language
from .models import OutboxMail, User

if TYPE_CHECKING:
    from tortoise.backends.base.client import BaseDBAsyncClient

logger = logging.getLogger(__name__)

BATCH = 20
QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"
CLAIM = """
UPDATE outbox SET status = 'sending', attempts = attempts + 1, lease_until = {lease}
WHERE id IN (
    SELECT id FROM outbox
    WHERE (status = 'queued' AND due_at <= {now}) OR (status = 'sending' AND lease_until < {now})
    ORDER BY id LIMIT {limit}{lock}
)
RETURNING id, recipient, message, attempts
"""


async def queue(
    recipient: str,
    template: str,
    language: str,
    connection: BaseDBAsyncClient | None = None,
    **context: Any,
) -> OutboxMail:
    """Write the mail templates/mail/<template>.{txt,html} for recipient into the outbox.

    The text template's first line is the subject. Pass the connection of the transaction
    that causes the mail, so the mail exists exactly when what it tells of does.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    context["html_lang"] = LANGUAGES.get(language, LANGUAGES[DEFAULT])[1]
    with in_language(language):
        subject, _, text = (await _render(f"mail/{template}.txt", context)).partition("\n")
        html = await _render(f"mail/{template}.html", {**context, "subject": subject})
    domain = parseaddr(app.config["MAIL_FROM"])[1].rpartition("@")[2] or "localhost"
    message = mail.build(
        app.config["MAIL_FROM"], recipient, subject.strip(), text.strip() + "\n", html, domain
    )
    row = await OutboxMail.create(
        recipient=recipient,
        template=template,
        subject=subject.strip()[:255],
        message=message.as_string(),
        due_at=time.time(),
        using_db=connection,
    )
    _wake_after_commit(app, connection)
    return row


async def queue_to_user(
    user: User, template: str, connection: BaseDBAsyncClient | None = None, **context: Any
) -> OutboxMail | None:
    """Mail an account notice to user's verified address, in user's language; else nothing."""
    if not user.email or not user.email_verified:
        return None
    return await queue(
        user.email, template, user.locale, connection, username=user.username, **context
    )


def public_link(path: str) -> str:
    """An absolute link for a mail: QUART_PUBLIC_URL's origin, never the request's Host."""
    return str(current_app.config["PUBLIC_URL"]).rstrip("/") + path


async def _render(name: str, context: dict[str, Any]) -> str:
    template = current_app.jinja_env.get_template(name)
    return await template.render_async(public_url=current_app.config["PUBLIC_URL"], **context)


def _wake_after_commit(app: Quart, connection: BaseDBAsyncClient | None) -> None:
    """Tell this worker's sender once the row is visible: after the response, or now."""
    sender = app.extensions.get("mail_sender")
    if not isinstance(sender, Sender):
        return
    if has_request_context():

        @after_this_request
        async def wake(response: ResponseTypes) -> ResponseTypes:
            sender.wake()
            return response

    elif connection is None:
        sender.wake()


@dataclass
class Claimed:
    id: int
    recipient: str
    message: str
    attempts: int


async def claim(limit: int = BATCH) -> list[Claimed]:
    """Take up to limit due mails for this worker alone, atomically."""
    now = time.time()
    connection = get_connection("default")
    postgres = connection.capabilities.dialect == "postgres"
    sql = CLAIM.format(
        lease="$1" if postgres else "?",
        now="$2" if postgres else "?",
        limit=int(limit),
        lock=" FOR UPDATE SKIP LOCKED" if postgres else "",
    )
    lease = now + float(current_app.config["MAIL_LEASE"])
    params = [lease, now] if postgres else [lease, now, now]
    rows = await connection.execute_query_dict(sql, params)
    return sorted(
        (Claimed(r["id"], r["recipient"], r["message"], r["attempts"]) for r in rows),
        key=lambda claimed: claimed.id,
    )


async def send_due(app: Quart) -> int:
    """Send every mail that is due now, in batches; the number claimed."""
    total = 0
    while batch := await claim():
        total += len(batch)
        for claimed in batch:
            await _send_one(app, claimed)
        if len(batch) < BATCH:
            break
    return total


async def _send_one(app: Quart, claimed: Claimed) -> None:
    message = message_from_string(claimed.message, policy=policy.default)
    try:
        await mail.deliver(app, message)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        await _failed(app, claimed, error)
        return
    await OutboxMail.filter(id=claimed.id).update(
        status=SENT, message="", lease_until=None, sent_at=datetime.now(UTC), last_error=None
    )
    logger.info("mail %d sent to %s", claimed.id, claimed.recipient)


async def _failed(app: Quart, claimed: Claimed, error: Exception) -> None:
    config = app.config
    reason = f"{type(error).__name__}: {error}"[:2000]
    permanent = isinstance(error, mail.PermanentFailure)
    if permanent or claimed.attempts >= int(config["MAIL_MAX_ATTEMPTS"]):
        await OutboxMail.filter(id=claimed.id).update(
            status=FAILED, lease_until=None, last_error=reason
        )
        logger.error("mail %d to %s given up: %s", claimed.id, claimed.recipient, reason)
        return
    delay = min(
        float(config["MAIL_RETRY_BASE"]) * 2 ** (claimed.attempts - 1),
        float(config["MAIL_RETRY_MAX"]),
    )
    await OutboxMail.filter(id=claimed.id).update(
        status=QUEUED, lease_until=None, due_at=time.time() + delay, last_error=reason
    )
    logger.warning(
        "mail %d to %s not sent (attempt %d, next in %.0f s): %s",
        claimed.id,
        claimed.recipient,
        claimed.attempts,
        delay,
        reason,
    )


class Sender:
    """Each worker's background task: send what is due, then wait for a wake or the poll."""

    def __init__(self, app: Quart | None = None) -> None:
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        app.extensions["mail_sender"] = self
        app.before_serving(self.start)
        app.after_serving(self.stop)

    async def start(self) -> None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        interval = float(app.config["MAIL_POLL_INTERVAL"])
        if interval > 0:
            self._stopping = False
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(app, interval), name="mail-sender")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self, app: Quart, interval: float) -> None:
        async with app.app_context():
            while not self._stopping:
                self._wake.clear()
                try:
                    await send_due(app)
                except (BaseORMException, *DATABASE_ERRORS):
                    logger.warning("could not read the outbox", exc_info=True)
                except Exception:
                    # The sender outlives any one bad mail; the row is claimed again later.
                    logger.exception("the mail sender failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)

    async def stop(self) -> None:
        """Let a mail being sent finish (up to MAIL_TIMEOUT), then end the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        timeout = float(current_app.config["MAIL_TIMEOUT"])
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


mail_group = click.Group("mail", help="The outbox of mails.")


@mail_group.command("status")
@click.option("--all", "show_all", is_flag=True, help="Also list the mails already sent.")
def status(show_all: bool) -> None:
    """Count the mails by status, and list those queued, being sent or failed."""

    async def read() -> tuple[dict[str, int], list[OutboxMail]]:
        counts = {
            s: await OutboxMail.filter(status=s).count() for s in (QUEUED, SENDING, FAILED, SENT)
        }
        query = OutboxMail.all() if show_all else OutboxMail.exclude(status=SENT)
        return counts, await query.order_by("id").limit(200)

    counts, rows = run(read)
    click.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))
    for row in rows:
        due = datetime.fromtimestamp(row.due_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = (
            f"#{row.id} {row.status} to {row.recipient} ({row.template}), {row.attempts} attempt(s)"
        )
        if row.status == QUEUED:
            line += f", due {due} UTC"
        if row.last_error:
            line += f"\n    last error: {row.last_error}"
        click.echo(line)


@mail_group.command("send")
def send_now() -> None:
    """Send every mail that is due now, without serving (the workers' senders also do)."""
    sent = run(lambda: send_due(current_app._get_current_object()))  # type: ignore[attr-defined]
    click.echo(f"{sent} mail(s) claimed.")


def init_app(app: Quart) -> None:
    Sender(app)
    app.cli.add_command(mail_group)
