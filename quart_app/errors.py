"""Error answers: a plain page, or JSON under /api/; never a traceback."""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
from quart import (
    Quart,
    ResponseReturnValue,
    has_request_context,
    jsonify,
    render_template,
    request,
    websocket,
)
from quart_schema import ResponseSchemaValidationError
from tortoise.exceptions import DBConnectionError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from .i18n import _l

logger = logging.getLogger(__name__)

# What a lost or refused database connection raises, through Tortoise or straight from asyncpg.
DATABASE_ERRORS = (
    DBConnectionError,
    OperationalError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def init_app(app: Quart) -> None:
    app.register_error_handler(HTTPException, http_error)
    for error in DATABASE_ERRORS:
        app.register_error_handler(error, database_unavailable)
    app.register_error_handler(ResponseSchemaValidationError, unexpected_error)
    app.register_error_handler(Exception, unexpected_error)


# Werkzeug's own names and descriptions are English only; these are shown in their place.
STANDARD = {
    400: (_l("Bad request"), _l("The request could not be understood.")),
    401: (_l("Unauthorized"), _l("Please log in first.")),
    403: (_l("Forbidden"), _l("You are not allowed to do this.")),
    404: (_l("Not found"), _l("There is nothing at this address.")),
    405: (_l("Method not allowed"), _l("This address does not accept this method.")),
    413: (_l("Too large"), _l("The request is larger than 1 MiB.")),
    415: (_l("Unsupported media type"), _l("The request body has the wrong type.")),
    422: (_l("Unprocessable request"), _l("The request is not valid.")),
    429: (_l("Too many requests"), _l("Too many attempts. Please wait and try again.")),
    500: (_l("Server error"), _l("Something went wrong on our side. Please try again.")),
    503: (_l("Service unavailable"), _l("The service is unavailable. Please try again.")),
}


def error_code(error: HTTPException) -> str:
    """A stable machine-readable name: the error's own, or its HTTP name in snake case."""
    code = getattr(error, "error_code", None)
    return code if isinstance(code, str) else re.sub(r"\W+", "_", (error.name or "")).lower()


async def http_error(error: HTTPException) -> ResponseReturnValue:
    code = error.code or 500
    # Keep what the error itself says about the response, such as Retry-After or Allow.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    name, message = STANDARD.get(code, (error.name, error.description))
    if (
        type(error).__module__ != "werkzeug.exceptions"
        or error.description != type(error).description
    ):
        message = error.description  # a message of our own, translated where it was made
    path = (request if has_request_context() else websocket).path
    if path.startswith(("/api/", "/ws/")):
        body: dict[str, Any] = {"error": error_code(error), "message": str(message)}
        details = getattr(error, "details", None)
        if details is not None:
            body["details"] = [d.model_dump() for d in details]
        return jsonify(body), code, headers
    page = await render_template("error.html", code=code, name=name, message=message)
    return page, code, headers


async def database_unavailable(error: Exception) -> ResponseReturnValue:
    logger.error("database unavailable: %s: %s", type(error).__name__, error)
    return await http_error(ServiceUnavailable())


async def unexpected_error(error: Exception) -> ResponseReturnValue:
    logger.exception("unhandled error", exc_info=error)
    return await http_error(InternalServerError())
