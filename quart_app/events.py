"""Session-ended events, for the sockets that log pages out: in-process, or through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, cast

from quart import Quart, current_app

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

CHANNEL = "quart_app:session-ended"


class Observer(Protocol):
    """Told what this worker hears through Redis, and whether it is hearing at all."""

    def heard(self, session_ids: list[int]) -> None: ...

    def hearing(self, subscribed: bool) -> None: ...


class SessionEvents:
    """Tell every socket of a session, on any worker, that the session has ended.

    Without Redis the events reach the sockets of this process only; with it, each worker
    subscribes once and hands the events to its own sockets.
    """

    def __init__(self, app: Quart | None = None) -> None:
        self._waiters: defaultdict[int, set[asyncio.Queue[str]]] = defaultdict(set)
        self._redis: Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._observers: list[Observer] = []
        self.channel = CHANNEL
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        app.extensions["session_events"] = self
        # Session ids are per database: apps on other databases sharing this Redis (Redis
        # pub/sub ignores database numbers) must not hear each other's events.
        database = hashlib.sha256(str(app.config["DATABASE_URL"]).encode()).hexdigest()[:16]
        self.channel = f"{CHANNEL}:{database}"
        redis_url = app.config["REDIS_URL"]
        if redis_url:
            from redis.asyncio import Redis  # only deployments with Redis load it

            self._redis = Redis.from_url(redis_url)
            app.before_serving(self._start)
            app.after_serving(self._stop)

    def observe(self, observer: Observer) -> None:
        self._observers.append(observer)

    async def publish(self, session_ids: Iterable[int], reason: str | None) -> None:
        """Sessions ended (reason: why, for their sockets) or only changed (None).

        A change reaches the observers of the other workers (their copies of the session)
        and no socket.
        """
        ids = list(session_ids)
        if not ids:
            return
        if self._redis is None:
            self._deliver(ids, reason)
            return
        from redis.exceptions import RedisError

        message = json.dumps({"ids": ids, "reason": reason})
        try:
            await self._redis.publish(self.channel, message)
        except RedisError:
            # The sessions have ended in the database whatever happens here; the sockets of
            # this worker at least hear of it, the others when they next check.
            logger.warning("could not publish a session-ended event", exc_info=True)
            self._deliver(ids, reason)

    def subscribe(self, session_id: int) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._waiters[session_id].add(queue)
        return queue

    def unsubscribe(self, session_id: int, queue: asyncio.Queue[str]) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(queue)
            if not waiters:
                del self._waiters[session_id]

    def _deliver(self, ids: Iterable[int], reason: str | None) -> None:
        if reason is None:
            return
        for session_id in ids:
            for queue in self._waiters.get(session_id, ()):
                queue.put_nowait(reason)

    async def _start(self) -> None:
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready))
        await asyncio.wait_for(ready.wait(), timeout=10)

    async def _listen(self, ready: asyncio.Event) -> None:
        from redis.exceptions import RedisError

        assert self._redis is not None
        delay = 0.5
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._hearing(True)
                    ready.set()
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            event = json.loads(message["data"])
                            ids = [int(session_id) for session_id in event["ids"]]
                            for observer in self._observers:
                                observer.heard(ids)
                            self._deliver(ids, event["reason"])
            except asyncio.CancelledError:
                self._hearing(False)
                raise
            except (RedisError, OSError, ValueError, KeyError, TypeError):
                self._hearing(False)
                logger.warning("session events: Redis subscription lost, retrying")
                ready.set()  # serve without live events rather than not at all
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _hearing(self, subscribed: bool) -> None:
        for observer in self._observers:
            observer.hearing(subscribed)

    async def _stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()


def session_events() -> SessionEvents:
    return cast(SessionEvents, current_app.extensions["session_events"])
