"""Response headers every page carries, and the trusted-proxy setting for client addresses."""

from __future__ import annotations

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, Response, current_app

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


def init_app(app: Quart) -> None:
    app.after_request(_headers)
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
