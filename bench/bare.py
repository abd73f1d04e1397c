"""The ceiling for any Quart request: one route that returns a short HTML string."""

from __future__ import annotations

from quart import Quart

app = Quart(__name__)


@app.get("/index/")
async def index() -> str:
    return "<!doctype html><title>Home</title><h1>Hello, bench!</h1>"
