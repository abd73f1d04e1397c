"""Response headers every page carries, the same-origin rule, and the trusted-proxy setting."""

from __future__ import annotations

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, Response, current_app, websocket
from quart.wrappers.base import BaseRequestWebsocket
from werkzeug.exceptions import Forbidden

from .i18n import _l

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)


class ForeignOrigin(Forbidden):
    """A page of another origin tried to act as one of ours."""

    error_code = "cross_site"
    description = _l("Requests from other sites are not accepted.")


def same_origin(connection: BaseRequestWebsocket) -> bool:
    """False when the browser says the request comes from a page of another origin.

    Programs send no Origin and pass; browsers always send it on WebSockets and on
    cross-origin POSTs, so a foreign page is caught either way.
    """
    origin = connection.headers.get("Origin")
    if origin is None:
        return True
    # A WebSocket's scheme is ws/wss; its page's origin is http/https.
    scheme = {"ws": "http", "wss": "https"}.get(connection.scheme, connection.scheme)
    return origin == f"{scheme}://{connection.host}"


async def refuse_foreign_websocket() -> None:
    """Refuse the handshake of a socket opened by a page of another origin."""
    if not same_origin(websocket):
        raise ForeignOrigin()


def init_app(app: Quart) -> None:
    app.after_request(_headers)
    # WebSockets are not covered by SameSite=Lax nor CORS: the Origin is all there is.
    app.before_websocket(refuse_foreign_websocket)
    hops = int(app.config["TRUSTED_PROXIES"])
    if hops > 0:
        # Only the last `hops` X-Forwarded-For entries were written by our own proxies.
        app.asgi_app = ProxyFixMiddleware(app.asgi_app, mode="legacy", trusted_hops=hops)  # type: ignore[method-assign]


async def _headers(response: Response) -> Response:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if current_app.config["ENV"] == "production":
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    return response
