"""Every private name of a dependency the app relies on, each touched here and only here.

tests/test_compat.py fails loudly when an upgrade changes one of them; the versions they
were checked on are pinned in pyproject.toml and requirements.lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Any, TypeVar

from quart import Quart
from tortoise.models import Model

ModelT = TypeVar("ModelT", bound=Model)

# The client address Quart's ASGI layer gives a request whose scope has none, as its test
# client's requests have (quart/asgi.py writes it into the Remote-Addr header).
QUART_TEST_CLIENT_ADDRESS = "<local>"


def db_columns(model: type[Model]) -> set[str]:
    """The model's database columns (Tortoise's private `_meta.db_fields`).

    Tortoise documents no public way to list a model's columns.
    """
    return set(model._meta.db_fields)


def db_table(model: type[Model]) -> str:
    """The model's table name (Tortoise's private `_meta.db_table`)."""
    return str(model._meta.db_table)


def model_from_row(model: type[ModelT], row: dict[str, Any], prefix: str) -> ModelT:
    """A model instance from a raw row, converted as Tortoise converts what it reads.

    `_init_from_db` is what Tortoise's own querysets call; `Model(**row)` would treat the
    instance as new and skip the database-to-Python conversion, and the public
    `Model.raw()` cannot read two models from one joined row (tortoise/tortoise-orm#1667
    asks for a safe way to build models from raw SQL).
    """
    return model._init_from_db(**{c: row[prefix + c] for c in model._meta.db_fields})


def tortoise_init_options() -> dict[str, Any]:
    """Tortoise.init's private `_enable_global_fallback`.

    Quart runs each request in its own task, outside the context in which before_serving
    initialised Tortoise; the fallback makes the connections process-wide, as Tortoise's
    own FastAPI integration does (tortoise/tortoise-orm#2244).
    """
    return {"_enable_global_fallback": True}


def drop_flask_context_processor(app: Quart) -> None:
    """Drop the copy of Flask's default context processor each blueprint brings along.

    It is a plain function, which Quart sends to a thread on every render of the
    blueprint's pages; Quart's own async one already puts `request` and `g` in the context.
    Quart's Blueprint inherits it from Flask's, which keeps it in the private
    `flask.templating` module (no upstream issue found).
    """
    from flask.templating import _default_template_ctx_processor

    for name, processors in app.template_context_processors.items():
        if name is not None:
            processors[:] = [p for p in processors if p is not _default_template_ctx_processor]


def kill_hypercorn_master() -> bool:
    """From a worker that cannot start, take Hypercorn's master down with it.

    Hypercorn's master exits 0 when every worker has died on import: its run() loses the
    workers' exit codes (pgjones/hypercorn#269, and the open fix pgjones/hypercorn#372).
    True when a master was found and killed.
    """
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return False
    parent = os.getppid()
    with contextlib.suppress(OSError):
        if b"hypercorn" in Path(f"/proc/{parent}/cmdline").read_bytes():
            os.kill(parent, signal.SIGKILL)
            return True
    return False


def asyncpg_socket(connection: Any) -> socket.socket:
    """A duplicate of the socket an asyncpg connection reads (its private `_transport`).

    asyncpg offers no public way to the socket; the session cache peeks at the LISTEN
    connection's to know that nothing PostgreSQL sent is still unread. The duplicate shares
    the connection (peeking reads nothing) and stays valid after asyncpg closes its own.
    """
    raw = connection._transport.get_extra_info("socket")
    return socket.socket(fileno=os.dup(raw.fileno()))
