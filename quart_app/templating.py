"""Pages and mails rendered by plain Jinja: nothing in a template awaits anything.

Quart compiles every template for Jinja's async mode, in which each block, loop and call
of a page goes through an async generator and `auto_await`; the page costs about twice
what the same template costs rendered synchronously. Everything the templates call here
(`url_for`, `_()`, `logout_csrf_token()`, `get_flashed_messages()`) is synchronous, and
what is async (context processors) Quart awaits before rendering. So the app's Jinja
environment compiles templates synchronously, and `render_async`, which Quart's
`render_template` awaits, renders them in one call.

A template global that is a coroutine function would print as a coroutine here:
tests/test_templating.py renders every page and fails on one.
"""

from __future__ import annotations

from typing import Any

import jinja2
from quart import Quart
from quart.templating import Environment


class PageTemplate(jinja2.Template):
    async def render_async(self, *args: Any, **kwargs: Any) -> str:
        return self.render(*args, **kwargs)


class PageEnvironment(Environment):
    """Quart's Environment (its loader, globals, autoescape), without the async mode."""

    template_class = PageTemplate

    def __init__(self, app: Quart, **options: Any) -> None:
        options.setdefault("loader", app.create_global_jinja_loader())
        jinja2.Environment.__init__(self, **options)


def init_app(app: Quart) -> None:
    """Before anything asks for app.jinja_env, which Quart creates once, on first use."""
    app.jinja_environment = PageEnvironment
