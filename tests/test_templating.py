"""Pages are rendered by plain (synchronous) Jinja: nothing a template calls may be async."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from quart_app.templating import PageEnvironment

from .conftest import CSRF_PATTERN, AuthActions


def test_the_environment_is_synchronous(app: Quart) -> None:
    assert isinstance(app.jinja_env, PageEnvironment)
    assert app.jinja_env.is_async is False


async def test_no_template_global_or_context_value_is_a_coroutine_function(
    app: Quart, auth: AuthActions
) -> None:
    await auth.register()
    async with app.test_request_context("/index/"):
        await app.preprocess_request()
        context: dict[str, object] = {}
        await app.update_template_context(context)
    callables = {**app.jinja_env.globals, **context}
    asynchronous = sorted(name for name, value in callables.items() if _is_async(value))
    assert asynchronous == []


def test_an_async_global_would_be_caught(app: Quart) -> None:
    async def lookup() -> str:
        return "never awaited"

    assert _is_async(lookup)
    assert not _is_async(app.jinja_env.globals["url_for"])


def _is_async(value: object) -> bool:
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(
        getattr(value, "__call__", None)  # noqa: B004  # an object with an async __call__
    )


async def test_every_page_renders_without_a_coroutine(
    app: Quart, client: Client, auth: AuthActions
) -> None:
    pages = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in (rule.methods or set())
        and not rule.arguments
        and rule.endpoint.split(".")[0] in {"views", "account", "security_pages", "recovery_pages"}
    )
    assert {"/index/", "/login/", "/register/"} <= set(pages)
    anonymous = {path: await _body(client, path) for path in pages}
    await auth.register()
    logged_in = {path: await _body(client, path) for path in pages}
    for path, body in {**anonymous, **logged_in}.items():
        assert "coroutine object" not in body, path
    assert "Log out" in logged_in["/index/"]


async def _body(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status_code < 500, path
    return await response.get_data(as_text=True)


def _without_token(body: str) -> str:
    return CSRF_PATTERN.sub('name="csrf_token" type="hidden" value=""', body)


async def test_links_are_built_once_and_follow_the_script_root(
    app: Quart, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    url_for = app.url_for

    def counting(endpoint: str, **values: Any) -> str:
        built.append(endpoint)
        return url_for(endpoint, **values)

    monkeypatch.setattr(app, "url_for", counting)
    first = await _body(client, "/login/")
    links = len(built)
    # The same page but its CSRF token, which carries the second it was made in.
    assert _without_token(await _body(client, "/login/")) == _without_token(first)
    # The second page built none of the template's links (code may still call url_for).
    assert {"static", "views.register", "views.set_language"} <= set(built[:links])
    assert not {"static", "views.register", "views.set_language"} & set(built[links:])
    mounted = await (await client.get("/login/", root_path="/mounted")).get_data(as_text=True)
    assert 'href="/mounted/static/style.css"' in mounted
    assert 'href="/static/style.css"' in await _body(client, "/login/")
    # A value that differs (the language links' next) is a link of its own.
    other = await _body(client, "/register/")
    assert "next=/register/" in other.replace("%2F", "/")
    assert "next=/login/" not in other.replace("%2F", "/")
