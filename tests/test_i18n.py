"""Two languages: every visible string translated, chosen per visitor, in pages and JSON."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from quart import Quart
from quart.typing import TestClientProtocol as Client

from .conftest import AuthActions, csrf_token

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = ROOT / "quart_app" / "translations"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def source_messages() -> set[str]:
    """Every string the code and templates mark for translation, extracted as pybabel does."""
    method_map = [("quart_app/**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
    return {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(ROOT, method_map, keywords=keywords)
    }


def test_every_visible_string_has_a_chinese_translation() -> None:
    with (CATALOGUES / "zh" / "LC_MESSAGES" / "messages.po").open("rb") as file:
        catalog = read_po(file)
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(source_messages() - set(translated))
    assert not missing, f"not translated (run `make translations` and fill them in): {missing}"


def test_compiled_catalogue_matches_the_po_file() -> None:
    messages = CATALOGUES / "zh" / "LC_MESSAGES"
    with (messages / "messages.po").open("rb") as po, (messages / "messages.mo").open("rb") as mo:
        source, compiled = read_po(po), read_mo(mo)
    assert {m.id: m.string for m in source if m.id} == {m.id: m.string for m in compiled if m.id}


def html_lang(body: str) -> str:
    match = re.search(r'<html lang="([^"]+)">', body)
    assert match
    return match.group(1)


@pytest.mark.parametrize(
    ("headers", "lang", "heading"),
    [
        ({}, "en", "Log in"),
        ({"Accept-Language": "en-GB,en"}, "en", "Log in"),
        (ZH, "zh-CN", "登录"),
        ({"Accept-Language": "fr-FR,fr"}, "en", "Log in"),
    ],
)
async def test_language_from_accept_language(
    client: Client, headers: dict[str, str], lang: str, heading: str
) -> None:
    body = await (await client.get("/login/", headers=headers)).get_data(as_text=True)
    assert html_lang(body) == lang
    assert f"<h1>{heading}</h1>" in body


async def test_the_choice_is_remembered_in_a_cookie(client: Client) -> None:
    response = await client.get("/language/zh?next=%2Fregister%2F")
    assert response.status_code == 303
    assert response.headers["Location"] == "/register/"
    body = await (await client.get("/register/", headers={"Accept-Language": "en"})).get_data(
        as_text=True
    )
    assert html_lang(body) == "zh-CN"
    assert "姓名" in body
    await client.get("/language/en?next=%2Fregister%2F")
    body = await (await client.get("/register/", headers=ZH)).get_data(as_text=True)
    assert html_lang(body) == "en"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/"])
async def test_language_switch_never_leaves_the_site(client: Client, target: str) -> None:
    response = await client.get(f"/language/zh?next={target}")
    assert response.headers["Location"] == "/index/"


async def test_unknown_language_is_404(client: Client) -> None:
    assert (await client.get("/language/xx")).status_code == 404


async def test_every_page_switches_language(client: Client) -> None:
    body = await (await client.get("/login/")).get_data(as_text=True)
    assert 'href="/language/zh?next=/login/"' in body
    assert 'aria-current="true" lang="en"' in body


async def test_form_errors_and_flashes_in_chinese(app: Quart, client: Client) -> None:
    page = await (await client.get("/register/", headers=ZH)).get_data(as_text=True)
    response = await client.post(
        "/register/",
        form={
            "username": "张伟",
            "password": "password1",
            "password_confirm": "password1",
            "csrf_token": csrf_token(page),
        },
        headers=ZH,
    )
    body = await response.get_data(as_text=True)
    assert response.status_code == 400
    assert "这个密码太常见了" in body
    assert 'value="张伟"' in body
    auth = AuthActions(client)
    await client.get("/language/zh")
    await auth.register("张伟")
    index = await (await client.get("/index/")).get_data(as_text=True)
    assert "你好，张伟！" in index
    assert "欢迎，张伟！" in index
    assert "当前登录系统用户为" in index
    await auth.logout()
    login = await (await client.get("/login/")).get_data(as_text=True)
    assert "您已退出登录。" in login


async def test_json_errors_speak_the_language_but_keep_english_codes(client: Client) -> None:
    response = await client.post(
        "/api/login", json={"username": "nobody", "password": "whatever1"}, headers=ZH
    )
    body = await response.get_json()
    assert response.status_code == 401
    assert body == {"error": "invalid_credentials", "message": "姓名或密码错误。"}
    response = await client.post("/api/register", json={"username": "x", "password": "p"})
    assert (await response.get_json())["message"].startswith("Username must be")


async def test_error_pages_in_chinese(client: Client) -> None:
    response = await client.get("/nope/", headers=ZH)
    body = await response.get_data(as_text=True)
    assert response.status_code == 404
    assert "页面不存在" in body
    assert "Not Found" not in body


@pytest.mark.parametrize(("escaping", "html"), [("true", "&lt;b&gt;"), ("false", "<b>")])
async def test_template_strings_escape_their_variables_where_the_template_does(
    app: Quart, escaping: str, html: str
) -> None:
    source = (
        f"{{% autoescape {escaping} %}}"
        '{{ _("Hello, %(name)s!", name="<b>") }} {{ gettext("100%% sure") }}'
        "{% endautoescape %}"
    )
    async with app.test_request_context("/", headers=ZH):
        rendered = app.jinja_env.from_string(source).render()
    assert rendered == f"你好，{html}！ 100% sure"
