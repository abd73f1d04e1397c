"""The Flask + Flask-Login tutorial that quart_app ports, kept as the benchmark's baseline.

Written as the tutorial writes it: a user blueprint, `user_loader` querying by id,
`session_protection = "strong"`, werkzeug's default password hashing, Flask-SQLAlchemy on
SQLite and Flask-WTF forms with CSRF. It runs under gunicorn (2 sync workers) from its own
virtualenv, bench/.venv-flask, and is never imported by the benchmark itself.
"""

# Flask-Login and Flask-WTF ship no types, and no Flask extension is installed in the
# project's .venv, where their names are Any. The files are type-checked in both virtualenvs
# (docs/benchmarks.md), so an ignore that one of them needs is unused in the other.
# mypy: allow-subclassing-any, allow-untyped-decorators, no-warn-unused-ignores

from __future__ import annotations

from flask import Flask
from flask_login import LoginManager  # type: ignore[import-not-found, import-untyped]
from flask_sqlalchemy import SQLAlchemy  # type: ignore[import-not-found, import-untyped]

db = SQLAlchemy()
login_manager = LoginManager()
login_manager.login_view = "user.login"
login_manager.session_protection = "strong"


def create_app() -> Flask:
    """Build the app: FLASK_SECRET_KEY and FLASK_SQLALCHEMY_DATABASE_URI configure it."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///flask_original.sqlite3"
    app.config.from_prefixed_env()
    db.init_app(app)
    login_manager.init_app(app)

    from . import user

    app.register_blueprint(user.bp)
    with app.app_context():
        db.create_all()
    return app
