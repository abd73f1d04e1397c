"""quart_app: the Flask-Login tutorial's accounts, on Quart."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quart import Quart, Request

from . import (
    account,
    api,
    cli,
    compat,
    db,
    errors,
    i18n,
    outbox,
    recovery_pages,
    security,
    security_pages,
    signed,
    templating,
    tokens,
    views,
)
from .config import ConfigError, load_config
from .i18n import _l
from .login import LoginManager, user_read_with_session
from .models import User
from .passwords import PasswordHasher
from .throttle import Throttle

ROOT = Path(__file__).resolve().parent.parent
# Installed from a wheel, the copy inside the package; else the checkout's templates/.
TEMPLATES = next(
    (p for p in (Path(__file__).resolve().parent / "templates", ROOT / "templates") if p.is_dir()),
    ROOT / "templates",
)

login_manager = LoginManager()
login_manager.session_protection = "strong"
login_manager.login_view = "views.login"
login_manager.refresh_view = "account.confirm"
login_manager.login_message = _l("Please log in to access this page.")
login_manager.expired_message = _l("Your session has expired. Please log in again.")
login_manager.needs_refresh_message = _l(
    "To protect your account, please enter your password again."
)


login_manager.blueprint_login_views["api"] = None  # the API answers 401, not a redirect


@login_manager.user_loader
async def load_user(user_id: str) -> User | None:
    """The tutorial's loader, answered by the row read with the session when there is one."""
    return user_read_with_session(user_id) or await User.get_or_none(id=user_id)


@login_manager.request_loader
async def load_user_from_token(request: Request) -> User | None:
    """Programs authenticate to the API with `Authorization: Bearer <token>`."""
    secret = tokens.bearer_token() if request.blueprint == "api" else None
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
    templating.init_app(app)
    signed.init_app(app)
    i18n.init_app(app)

    db.init_app(app)
    PasswordHasher(app)
    Throttle(app)
    login_manager.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(security_pages.bp)
    app.register_blueprint(recovery_pages.bp)
    outbox.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    _log_auth_events(app)
    compat.drop_flask_context_processor(app)
    return app


def _log_auth_events(app: Quart) -> None:
    """Send the auth event lines (quart_app.auth) to stderr, where Hypercorn logs too."""
    logger = logging.getLogger("quart_app.auth")
    if not app.testing and not logger.handlers:
        logger.addHandler(logging.StreamHandler())
        logger.setLevel(logging.INFO)


def _refuse_to_serve(error: ConfigError) -> None:
    """Name what is missing; under Hypercorn, also make its master process exit non-zero."""
    print(f"quart_app cannot start: {error}", file=sys.stderr, flush=True)
    compat.kill_hypercorn_master()


try:
    app = create_app()
except ConfigError as error:
    _refuse_to_serve(error)
    raise
