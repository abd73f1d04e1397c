"""The API documentation page: Swagger UI from a Python package, nothing from a CDN."""

from __future__ import annotations

from quart import Blueprint, ResponseReturnValue, abort, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)

# What templates/docs.html loads. The rest of the distribution (its stock index.html and
# oauth2-redirect.html, source maps) is another page than ours and is not served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})


@bp.get("/docs")
async def docs() -> ResponseReturnValue:
    return await render_template("docs.html")


@bp.get("/docs/assets/<path:filename>")
async def assets(filename: str) -> ResponseReturnValue:
    if filename not in ASSETS:
        abort(404)
    return await send_from_directory(swagger_ui_path, filename)
