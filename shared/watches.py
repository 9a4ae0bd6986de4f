"""The two watches that run beside a service's workers.

The database watch notices an outage (for ``/readyz``) and, when the database answers again, replaces the
connection pool, so no request meets a connection of the old server. The broker watch checks every few
seconds, over a connection of its own, that the topology exists and that this process's consumers are
still subscribed; when the broker lost its definitions or cancelled a consumer (its queue was deleted), or
when the watch had to reconnect, it declares the topology again and restarts the consumers. It also
reports each consumer's backlog and dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from faststream.rabbit import RabbitBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.inbox import EventConsumer
from shared.observability import WorkerHealth, get_logger, reraise_if_cancelled
from shared.topology import ConsumerQueue, queue_depths

log = get_logger(__name__)


class DatabaseWatch:
    """Whether the database answers; a fresh pool once it answers again after an outage."""

    def __init__(self, engine: AsyncEngine, interval: float, health: WorkerHealth) -> None:
        self.engine = engine
        self.interval = interval
        self.health = health
        self.up = True

    async def ready(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                async with asyncio.timeout(2):
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            # A cancellation inside a database call can surface as another error: never swallow it, or
            # the watch loop would outlive stop() and hang it.
            reraise_if_cancelled(exc)
            return False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            up = await self.ready()
            if up:
                self.health.ok("database")
                if not self.up:
                    # Every pooled connection belongs to the server that went away (or its restart):
                    # start afresh rather than fail one request per stale connection.
                    log.info("database answers again; replacing the connection pool")
                    with contextlib.suppress(Exception):
                        await self.engine.dispose()
            else:
                self.health.failed("database", "database unreachable")
            self.up = up


class BrokerWatch:
    """Topology present and consumers subscribed, checked over a connection of the watch's own."""

    def __init__(
        self,
        *,
        service: str,
        amqp_url: str,
        interval: float,
        broker: RabbitBroker,
        consumers: Sequence[EventConsumer],
        queues: tuple[ConsumerQueue, ...],
        declare: Callable[[AbstractChannel], Awaitable[None]],
        health: WorkerHealth,
    ) -> None:
        self.service = service
        self.amqp_url = amqp_url
        self.interval = interval
        self.broker = broker
        self.consumers = consumers
        self.queues = queues
        self.declare = declare
        self.health = health

    async def run(self) -> None:
        connection: AbstractConnection | None = None
        reconnected = False
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    if connection is None or connection.is_closed:
                        connection = await aio_pika.connect(self.amqp_url, timeout=10)
                    await self.check(connection, reconnected)
                    reconnected = False
                    self.health.ok("broker")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    log.warning("broker check failed", error=repr(exc), service=self.service)
                    self.health.failed("broker", exc)
                    reconnected = True
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            await connection.close()
                    connection = None
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()

    async def check(self, connection: AbstractConnection, reconnected: bool) -> None:
        depths = await queue_depths(connection, self.queues)
        lost = [c.queue.name for c in self.consumers if not c.is_consuming()]
        if depths is None or lost or reconnected:
            log.warning(
                "declaring the topology again",
                service=self.service,
                topology_missing=depths is None,
                consumers_lost=lost,
                after_reconnect=reconnected,
            )
            channel = await connection.channel()
            await self.declare(channel)
            await channel.close()
            if lost:
                # The broker cancelled our consumers (their queue was deleted) or did not restore them:
                # subscribe again, on the queues just declared.
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                await self.broker.start()
                log.info("consumers subscribed again", service=self.service, queues=lost)
            depths = await queue_depths(connection, self.queues)
        for consumer in self.consumers:
            if depths is not None:
                self.health.backlog(consumer.worker_name, depths.get(consumer.queue.name, 0))
                self.health.backlog(
                    f"{consumer.worker_name}.dlq", depths.get(consumer.queue.dead_letter_queue, 0)
                )
