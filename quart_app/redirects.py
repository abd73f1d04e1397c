"""Where a page may send the browser next: only to a path of this site."""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import url_for


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else the index: no open redirects."""
    fallback = url_for("views.index")
    if not target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return fallback
    # Browsers read a backslash as a slash, so "/\\evil.example" is "//evil.example".
    parts = urlsplit(target.replace("\\", "/"))
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return fallback
    if parts.path.startswith("//"):
        return fallback
    return target
