"""/openapi.json: a valid document of the API alone, describing no password."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate
from quart.typing import TestClientProtocol as Client

from .api_helpers import COOKIE

# The routes used before a login: no session or token is asked of them.
PUBLIC = {
    "/api/register",
    "/api/login",
    "/api/login/two-factor",
    "/api/login/two-factor/passkey/options",
    "/api/login/two-factor/passkey",
    "/api/login/passkey/options",
    "/api/login/passkey",
    "/api/password-reset",
    "/api/password-reset/confirm",
}

# /openapi.json -----------------------------------------------------------------------------


async def test_openapi_document_is_valid_and_describes_only_the_api(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = await response.get_json()
    validate(document)  # raises on an invalid OpenAPI document
    assert document["openapi"].startswith("3.")
    paths: dict[str, dict[str, Any]] = document["paths"]
    assert paths
    assert all(path.startswith("/api/") for path in paths)
    assert {"/api/register", "/api/login", "/api/logout", "/api/me", "/api/tokens"} <= set(paths)
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {"type": "apiKey", "in": "cookie", "name": COOKIE}
    assert schemes["token"] == {"type": "http", "scheme": "bearer"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            security = operation.get("security")
            if path in PUBLIC:
                assert not security, f"{method} {path}"
            else:
                assert security == [{"session": []}, {"token": []}], f"{method} {path}"


def resolve(node: Any, components: dict[str, Any]) -> Any:
    """node with every $ref replaced by the component schema it names."""
    if isinstance(node, dict):
        if "$ref" in node:
            return resolve(components[node["$ref"].rsplit("/", 1)[-1]], components)
        return {key: resolve(value, components) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, components) for item in node]
    return node


async def test_openapi_responses_never_describe_a_password(client: Client) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    components = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = resolve(operation["responses"], components)
            assert "password" not in str(responses).lower(), f"{method} {path}"
            for status, answer in responses.items():
                if status.startswith("2") and "content" in answer:
                    schema = answer["content"]["application/json"]["schema"]
                    assert "hash" not in str(schema.get("properties", {})).lower()
