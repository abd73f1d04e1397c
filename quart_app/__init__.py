"""quart_app: the Flask-Login tutorial's accounts, on Quart."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask.templating import _default_template_ctx_processor as flask_context_processor
from quart import Quart, has_request_context, request

from . import account, api, cli, db, errors, i18n, security, sessions, tokens, views
from .config import ConfigError, load_config
from .events import SessionEvents
from .i18n import _l
from .login import LoginManager
from .passwords import PasswordHasher
from .session_cache import SessionCache
from .throttle import Throttle

ROOT = Path(__file__).resolve().parent.parent
# Installed from a wheel, the copy inside the package; else the checkout's templates/.
TEMPLATES = next(
    (p for p in (Path(__file__).resolve().parent / "templates", ROOT / "templates") if p.is_dir()),
    ROOT / "templates",
)

login_manager = LoginManager(store=sessions.DatabaseSessionStore())
login_manager.login_view = "views.login"
login_manager.refresh_view = "account.confirm"
login_manager.login_message = _l("Please log in to access this page.")
login_manager.expired_message = _l("Your session has expired. Please log in again.")
login_manager.needs_refresh_message = _l(
    "To protect your account, please enter your password again."
)


login_manager.blueprint_login_views["api"] = None  # the API answers 401, not a redirect


@login_manager.user_loader
async def load_user(session_key: str) -> Any:
    return await sessions.load_user(session_key)


@login_manager.request_loader
async def load_user_from_token() -> Any:
    """Programs authenticate to the API with `Authorization: Bearer <token>`."""
    api = has_request_context() and request.blueprint == "api"
    secret = tokens.bearer_token() if api else None
    return await tokens.load_user(secret) if secret else None


def create_app(test_config: Mapping[str, Any] | None = None) -> Quart:
    """Build the application; test_config replaces the environment when given."""
    app = Quart(
        __name__,
        template_folder=str(TEMPLATES),
        instance_path=os.environ.get("QUART_INSTANCE_PATH"),
        instance_relative_config=True,
    )
    load_config(app, test_config)
    i18n.init_app(app)

    db.init_app(app)
    PasswordHasher(app)
    Throttle(app)
    SessionEvents(app)
    SessionCache(app)
    login_manager.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(account.bp)
    api.init_app(app)
    cli.init_app(app)
    _log_auth_events(app)
    _render_without_threads(app)
    return app


def _render_without_threads(app: Quart) -> None:
    """Drop the copy of Flask's default context processor each blueprint brings along.

    It is a plain function, which Quart sends to a thread on every render of the
    blueprint's pages; Quart's own async one already puts `request` and `g` in the context.
    """
    for name, processors in app.template_context_processors.items():
        if name is not None:
            processors[:] = [p for p in processors if p is not flask_context_processor]


def _log_auth_events(app: Quart) -> None:
    """Send the auth event lines (quart_app.auth) to stderr, where Hypercorn logs too."""
    logger = logging.getLogger("quart_app.auth")
    if not app.testing and not logger.handlers:
        logger.addHandler(logging.StreamHandler())
        logger.setLevel(logging.INFO)


def _refuse_to_serve(error: ConfigError) -> None:
    """Name what is missing; under Hypercorn, also make its master process exit non-zero.

    Hypercorn's master exits 0 when every worker has died on import (its run() loses the
    workers' exit codes), so a worker that cannot start takes its master down with it.
    """
    print(f"quart_app cannot start: {error}", file=sys.stderr, flush=True)
    if multiprocessing.parent_process() is None:
        return
    parent = os.getppid()
    with contextlib.suppress(OSError):
        if b"hypercorn" in Path(f"/proc/{parent}/cmdline").read_bytes():
            os.kill(parent, signal.SIGKILL)


try:
    app = create_app()
except ConfigError as error:
    _refuse_to_serve(error)
    raise
