"""The private names of dependencies that quart_app/compat.py relies on, still meaning it.

Each test fails loudly when an upgrade changes what compat.py touches.
"""

from __future__ import annotations

from typing import Any

from flask import templating
from quart import Quart
from tortoise import Tortoise

from quart_app import compat
from quart_app.models import AuthSession, User


def test_tortoise_lists_a_models_columns_and_table(app: Quart) -> None:
    columns = compat.db_columns(User)
    assert {"id", "username", "username_key", "password_hash", "credential_generation"} <= columns
    assert "user_id" in compat.db_columns(AuthSession)  # the foreign key's column
    assert compat.db_table(User) == "users"
    assert compat.db_table(AuthSession) == "sessions"


async def test_tortoise_builds_a_model_from_a_raw_row_with_conversion(app: Quart) -> None:
    user = await User.create(username="Row", username_key="row", password_hash="x")
    row: dict[str, Any] = {
        f"p_{c}": v for c, v in (await User.filter(id=user.id).values())[0].items()
    }
    built = compat.model_from_row(User, row, "p_")
    assert (built.id, built.username, built.is_active) == (user.id, "Row", True)
    assert built._saved_in_db  # as Tortoise's own querysets leave it: updates, not inserts


def test_tortoise_init_still_takes_the_global_fallback() -> None:
    import inspect

    assert "_enable_global_fallback" in inspect.signature(Tortoise.init).parameters
    assert compat.tortoise_init_options() == {"_enable_global_fallback": True}


def test_flask_default_context_processor_is_dropped_from_blueprints(app: Quart) -> None:
    processor = templating._default_template_ctx_processor
    assert callable(processor)
    for name, processors in app.template_context_processors.items():
        if name is not None:
            assert processor not in processors, name


def test_a_plain_blueprint_still_brings_flasks_processor() -> None:
    """What compat.drop_flask_context_processor undoes: gone, the function may be removed."""
    from quart import Blueprint

    app = Quart(__name__)
    blueprint = Blueprint("plain", __name__)
    app.register_blueprint(blueprint)
    processors = app.template_context_processors.get("plain", [])
    app_processors = app.template_context_processors[None]
    assert templating._default_template_ctx_processor in [*processors, *app_processors]


def test_outside_hypercorn_no_master_is_killed() -> None:
    assert compat.kill_hypercorn_master() is False


async def test_quart_test_client_requests_come_from_the_local_placeholder(app: Quart) -> None:
    seen: list[str | None] = []

    @app.get("/compat-address")
    async def address() -> str:
        from quart import request

        seen.append(request.remote_addr)
        return ""

    await app.test_client().get("/compat-address")
    assert seen == [compat.QUART_TEST_CLIENT_ADDRESS]


async def test_asyncpg_connection_socket_is_reachable() -> None:
    """The LISTEN connection's socket, for the session cache's peek (events.all_heard)."""
    import socket

    import asyncpg
    import pytest

    from .conftest import POSTGRES_URL, USE_POSTGRES

    if not USE_POSTGRES or POSTGRES_URL is None:
        pytest.skip("runs in the PostgreSQL pass")
    connection = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
    sock = compat.asyncpg_socket(connection)
    try:
        assert sock.getpeername()[1] == int(POSTGRES_URL.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(BlockingIOError):
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # idle: nothing unread
        assert await connection.fetchval("SELECT 1") == 1  # peeking took nothing from it
    finally:
        sock.close()
        await connection.close()
