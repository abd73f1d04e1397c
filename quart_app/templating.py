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

The links of a page (13 on every page, for the header alone) are the same for every request
with the same script root: the templates' `url_for` remembers each relative link it built,
by endpoint and values, for requests to come.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from quart import Quart, has_request_context, request
from quart.templating import Environment

# Distinct links remembered per app; values that vary per request (a `next` path) pass through.
LINKS = 1024


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
    """After the configuration, before anything else asks for app.jinja_env (made once)."""
    app.jinja_environment = PageEnvironment
    app.jinja_env.globals["url_for"] = page_url_for(app)


def page_url_for(app: Quart) -> Any:
    """app.url_for, each relative link built once per script root, endpoint and values."""

    @lru_cache(maxsize=LINKS)
    def built(root: str, blueprint: str | None, endpoint: str, values: tuple[Any, ...]) -> str:
        return app.url_for(endpoint, **dict(values))

    def url_for(endpoint: str, **values: Any) -> str:
        if (
            not has_request_context()
            or values.get("_external")
            or values.get("_scheme") is not None
            or app.url_default_functions  # url_defaults may add values per request
        ):
            return app.url_for(endpoint, **values)
        blueprint = request.blueprint if endpoint.startswith(".") else None
        try:
            return built(request.script_root, blueprint, endpoint, tuple(sorted(values.items())))
        except TypeError:  # a value that cannot be a key (a list)
            return app.url_for(endpoint, **values)

    return url_for
