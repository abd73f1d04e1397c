"""gunicorn's entry point: `gunicorn flask_original.wsgi:app`."""

from __future__ import annotations

from . import create_app

app = create_app()
