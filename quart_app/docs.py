"""The API documentation page: Swagger UI from a Python package, nothing from a CDN."""

from __future__ import annotations

from quart import Blueprint, ResponseReturnValue, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)


@bp.get("/docs")
async def docs() -> ResponseReturnValue:
    return await render_template("docs.html")


@bp.get("/docs/assets/<path:filename>")
async def assets(filename: str) -> ResponseReturnValue:
    return await send_from_directory(swagger_ui_path, filename)
