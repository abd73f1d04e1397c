"""Two languages, English and Simplified Chinese, chosen per request by Quart-Babel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from babel import Locale
from babel.support import NullTranslations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from quart import Quart, g, has_request_context, has_websocket_context, request, websocket
from quart_babel import Babel, force_locale, get_locale, lazy_gettext
from quart_babel.domain import get_translations

TRANSLATIONS = Path(__file__).parent / "translations"
DEFAULT = "en"
# Locale -> (its name in itself, the <html lang> value).
LANGUAGES = {"en": ("English", "en"), "zh": ("中文", "zh-CN")}
COOKIE = "lang"


def select_locale() -> str:
    """The visitor's choice (a cookie) first, then the browser's Accept-Language."""
    if has_request_context():
        connection: Any = request
    elif has_websocket_context():
        connection = websocket
    else:
        return DEFAULT  # a command or a background task: no visitor to ask
    chosen = connection.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    if not connection.headers.get("Accept-Language"):
        return DEFAULT  # what best_match answers for no header, without parsing one
    return str(connection.accept_languages.best_match(list(LANGUAGES)) or DEFAULT)


# Each language's Locale, parsed once: Quart-Babel would parse the selector's code per request.
LOCALES = {code: Locale.parse(code) for code in LANGUAGES}


def _selected_locale() -> Locale:
    return LOCALES[select_locale()]


def current_language() -> str:
    locale = get_locale()
    return locale.language if locale is not None and locale.language in LANGUAGES else DEFAULT


def translations() -> NullTranslations:
    """This request's catalogue, found once: templates ask for it with every string."""
    found = g.get("_translations")
    if found is None:
        found = g._translations = get_translations()
    return cast(NullTranslations, found)


@contextmanager
def in_language(code: str) -> Iterator[None]:
    """Speak code for a while (a mail to a user in theirs), then the visitor's language again."""
    saved = g.pop("_translations", None)
    try:
        with force_locale(code if code in LANGUAGES else DEFAULT):
            yield
    finally:
        g.pop("_translations", None)
        if saved is not None:
            g._translations = saved


def init_app(app: Quart) -> None:
    Babel(app, locale_selector=_selected_locale, default_translation_directories=str(TRANSLATIONS))
    # Quart-Babel's callables look the locale and catalogue up again for every string.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
    # `_()` and `gettext()`, which every page calls many times, in one call rather than
    # through Jinja's alias and wrapper: the same newstyle rule (the text is marked safe
    # where the template autoescapes, then always formatted with its variables).
    app.jinja_env.globals.update(_=_template_gettext, gettext=_template_gettext)

    @app.context_processor
    async def language_context() -> dict[str, object]:
        language = current_language()
        return {"language": language, "html_lang": LANGUAGES[language][1], "languages": LANGUAGES}


@pass_context
def _template_gettext(context: Context, text: str, **variables: Any) -> str:
    translated = translations().ugettext(text)
    if context.eval_ctx.autoescape:
        translated = Markup(translated)  # noqa: S704  (our catalogue; % escapes the variables)
    return translated % variables


def _l(text: str) -> str:
    """A translation looked up each time it is shown, for texts defined at import time."""
    return cast(str, lazy_gettext(text))
