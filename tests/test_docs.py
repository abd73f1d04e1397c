"""The API documentation page serves what it loads, and nothing else of Swagger UI."""

from __future__ import annotations

import re

import pytest
from quart.typing import TestClientProtocol as Client


async def test_the_docs_page_loads_its_assets(client: Client) -> None:
    page = await (await client.get("/docs")).get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/docs/assets/[^"]+)"', page)

    assert len(assets) == 2
    for path in assets:
        response = await client.get(path)
        assert response.status_code == 200, path


@pytest.mark.parametrize(
    "filename",
    [
        "index.html",
        "oauth2-redirect.html",
        "oauth2-redirect.js",
        "swagger-ui-bundle.js.map",
        "swagger-ui.css.map",
        "swagger-initializer.js",
        "swagger-ui.js",
        "../__init__.py",
        "%2e%2e/__init__.py",
    ],
)
async def test_the_rest_of_swagger_ui_is_not_served(client: Client, filename: str) -> None:
    response = await client.get(f"/docs/assets/{filename}")
    assert response.status_code == 404
