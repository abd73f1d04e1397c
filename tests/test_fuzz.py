"""Property-based run of /openapi.json against the live app: no 5xx, only what it documents."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from quart import Quart
from schemathesis import AuthContext, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema
from tortoise.connection import get_connection

from quart_app import app as ready_app
from quart_app import create_app

from .conftest import PASSWORD, USE_POSTGRES, base_config


def openapi_path(rule: str) -> str:
    """Werkzeug's /tokens/<int:token_id> as OpenAPI's /tokens/{token_id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_operations() -> list[str]:
    """Every /api/ route of the ready app, labelled as the OpenAPI document names it."""
    return sorted(
        f"{method} {openapi_path(rule.rule)}"
        for rule in ready_app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    )


OPERATIONS = api_operations()
# Operations with no body, no parameters and no security: no input of theirs can be invalid,
# so they have no negative cases (test_no_input_operations_take_none checks the list).
NO_INPUT = {"POST /api/login/passkey/options", "POST /api/login/two-factor/passkey/options"}
CASES = [
    (label, mode)
    for label in OPERATIONS
    for mode in GenerationMode
    if not (label in NO_INPUT and mode is GenerationMode.NEGATIVE)
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,  # a secured operation answers 401 without the token, and with a wrong one
]
CREDENTIALS = {"username": "fuzzer", "password": PASSWORD}
FuzzCase = Case[Any]


class Account:
    """A registered user whose bearer token authenticates the fuzzed requests."""

    def __init__(self, schema: BaseSchema) -> None:
        self.schema = schema
        response = self.schema["/api/register"]["POST"].Case(body={**CREDENTIALS}).call()
        assert response.status_code == 201, response.text
        self.token = self.new_token()

    def new_token(self) -> str:
        """A fresh token, made in a fresh session (a fuzzed request may have ended the last)."""
        login = self.schema["/api/login"]["POST"].Case(body={**CREDENTIALS}).call()
        assert login.status_code == 200, login.text
        cookie = SimpleCookie("\n".join(login.headers["set-cookie"]))
        response = (
            self.schema["/api/tokens"]["POST"]
            .Case(body={"name": "fuzz", "password": PASSWORD})
            .call(cookies={name: morsel.value for name, morsel in cookie.items()})
        )
        assert response.status_code == 201, response.text
        token = response.json()["token"]
        assert isinstance(token, str)
        return token

    def live_token(self) -> str:
        """The token, replaced when a fuzzed logout or DELETE has revoked it."""
        me = (
            self.schema["/api/me"]["GET"]
            .Case()
            .call(headers={"Authorization": f"Bearer {self.token}"})
        )
        if me.status_code == 401:
            self.token = self.new_token()
        return self.token


@pytest.fixture
def api_schema(tmp_path: Path) -> BaseSchema:
    """The document of a fresh app, whose lifespan Schemathesis's ASGI transport runs.

    The transport serves the app on its own event loop; its pytest plugin ends the lifespan
    (and so closes the database) when the test is torn down.
    """
    app: Quart = create_app(base_config())
    app.instance_path = str(tmp_path / "instance")
    if USE_POSTGRES:

        @app.before_serving
        async def empty_tables() -> None:  # after db's hook, which connects and migrates
            await get_connection("default").execute_script(
                "TRUNCATE users, sessions RESTART IDENTITY CASCADE"
            )

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    account = Account(schema)

    @schema.auth(refresh_interval=None)
    class BearerToken:
        """The account's live token on every operation that declares a security scheme."""

        def get(self, case: FuzzCase, ctx: AuthContext) -> str:
            return account.live_token()

        def set(self, case: FuzzCase, data: str, ctx: AuthContext) -> None:
            # Negative cases may replace the headers with a non-mapping: those go without.
            secured = bool(case.operation.definition.raw.get("security"))
            if secured and isinstance(case.headers, MutableMapping):
                case.headers["Authorization"] = f"Bearer {data}"

    return schema


def test_the_document_describes_every_api_route(api_schema: BaseSchema) -> None:
    labels = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation Schemathesis cannot read
        labels.append(result.ok().label)
    assert sorted(labels) == sorted(OPERATIONS)


def test_no_input_operations_take_none(api_schema: BaseSchema) -> None:
    for label in NO_INPUT:
        method, path = label.split(" ")
        raw = api_schema[path][method].definition.raw
        assert not raw.get("requestBody"), label
        assert not raw.get("parameters"), label
        assert not raw.get("security"), label


@pytest.mark.parametrize(("label", "mode"), CASES, ids=lambda value: str(value))
def test_api_keeps_its_documented_contract(
    api_schema: BaseSchema, label: str, mode: GenerationMode
) -> None:
    method, path = label.split(" ")
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=30,
        deadline=timedelta(seconds=2),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,  # no .hypothesis/ folder in the work tree
    )
    def conforms(case: FuzzCase) -> None:
        case.call_and_validate(checks=CHECKS)

    conforms()
