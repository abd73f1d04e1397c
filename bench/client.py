"""A lean HTTP/1.1 browser on asyncio streams: keep-alive, cookies, forms, nothing else.

The benchmark's client shares the machine's two cores with the server it measures, so it
must cost little: a login (two requests, a form read) takes about 1 ms of CPU here, against
8 ms with httpx, its cookie jar and html.parser.
"""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self
from urllib.parse import urlencode

# Sent by wrk and by the browser alike: session_protection = "strong" ties a session to the
# client's address and User-Agent, so the cookie of a login must come back with the same one.
USER_AGENT = "quart_app-bench/1"
REQUEST_TIMEOUT = 30.0
MAX_HEADER = 64 * 1024

_INPUT = re.compile(rb"<input\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(rb"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+)""")


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.1 as this client reads it."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, in order, repeats kept
    body: bytes
    close: bool  # the server will not take another request on this connection

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


def hidden_input(body: bytes, name: str) -> str | None:
    """The value of the first <input name=name> in a page, attributes in any order."""
    for tag in _INPUT.finditer(body):
        attributes = {key.lower(): value.strip(b"\"'") for key, value in _ATTRIBUTE.findall(tag[0])}
        if attributes.get(b"name") == name.encode():
            value = attributes.get(b"value")
            return html.unescape(value.decode()) if value is not None else None
    return None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> Response:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER:
            raise ProtocolError("response head too large")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x response: {status_line!r}")
        status = int(rest[:3])
        headers = []
        for line in lines:
            if line:
                key, _, value = line.partition(":")
                headers.append((key.strip().lower(), value.strip()))
        fields = dict(headers)
        close = "close" in fields.get("connection", "").lower() or version == "HTTP/1.0"
        if "content-length" in fields:
            body = await self.reader.readexactly(int(fields["content-length"]))
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = await self._chunked()
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body, close = await self.reader.read(), True
        return Response(status, headers, body, close)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailer fields, unused
                return b"".join(parts)
            chunk = await self.reader.readexactly(size + 2)
            parts.append(chunk[:size])

    def close(self) -> None:
        self.writer.close()


class Browser:
    """One visitor of one site: its cookies, and its keep-alive connections to the site."""

    def __init__(self, base_url: str) -> None:
        host_port = base_url.removeprefix("http://").rstrip("/")
        host, _, port = host_port.partition(":")
        self.host, self.port = host, int(port or 80)
        self.authority = host_port
        self.cookies: dict[str, str] = {}
        self.extra_headers: dict[str, str] = {}
        self._idle: list[_Connection] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    async def post(self, path: str, form: dict[str, str]) -> Response:
        return await self.request("POST", path, urlencode(form).encode())

    async def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.authority}",
            f"User-Agent: {USER_AGENT}",
            "Accept: text/html",
        ]
        lines += [f"{name}: {value}" for name, value in self.extra_headers.items()]
        if self.cookies:
            lines.append(f"Cookie: {self.cookie_header()}")
        if body is not None:
            lines += [
                "Content-Type: application/x-www-form-urlencoded",
                f"Content-Length: {len(body)}",
            ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        async with asyncio.timeout(REQUEST_TIMEOUT):
            response = await self._exchange(request)
        self._store_cookies(response)
        return response

    async def _exchange(self, request: bytes) -> Response:
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else await self._connect()
        try:
            response = await connection.exchange(request)
        except (OSError, asyncio.IncompleteReadError):
            connection.close()
            if not reused:
                raise
            # The server may close an idle keep-alive connection at any time: retry once.
            connection = await self._connect()
            response = await connection.exchange(request)
        if response.close:
            connection.close()
        else:
            self._idle.append(connection)
        return response

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER)
        return _Connection(reader, writer)

    def _store_cookies(self, response: Response) -> None:
        for key, value in response.headers:
            if key != "set-cookie":
                continue
            pair, *attributes = value.split(";")
            name, _, cookie_value = pair.strip().partition("=")
            if _expired(attributes):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = cookie_value


def _expired(attributes: list[str]) -> bool:
    """Whether a Set-Cookie deletes its cookie: Max-Age <= 0, else an Expires in the past."""
    fields = {}
    for attribute in attributes:
        key, _, value = attribute.strip().partition("=")
        fields[key.lower()] = value.strip()
    max_age = fields.get("max-age", "")
    if max_age.lstrip("-").isdigit():
        return int(max_age) <= 0
    if "expires" in fields:
        try:
            return parsedate_to_datetime(fields["expires"]) <= datetime.now(UTC)
        except (TypeError, ValueError):
            return False
    return False
