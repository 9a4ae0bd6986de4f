"""Idempotent consumers: the inbox, and the one subscriber wrapper every service uses.

For each message the consumer inserts ``(consumer, message_id)`` into its service's inbox table and runs
the handler in the same transaction. A redelivered message finds its row and changes nothing. A handler
that fails is retried after a delay (republished to ``<queue>.retry``); after ``max_attempts`` the
message is rejected and dead-lettered to ``<queue>.dlq``. A message that cannot be parsed goes there at
once: retrying it cannot help.

A database that cannot be reached is not the message's fault: such an error (see
:func:`shared.db.is_infrastructure_error`) never counts as an attempt and never dead-letters anything. The
consumer keeps the message, waits until the database answers again (one probe with backoff for the whole
consumer, not one per message) and then handles it. Requeueing instead would count toward the quorum
queue's ``x-delivery-limit`` on every round and dead-letter the backlog of a long outage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faststream import AckPolicy
from faststream.rabbit import Channel, ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import SessionFactory, is_infrastructure_error
from shared.events import IntegrationEvent, event_class
from shared.observability import (
    MESSAGES_CONSUMED,
    WorkerHealth,
    cancel_and_wait,
    correlation_id_var,
    get_logger,
    reraise_if_cancelled,
)
from shared.topology import RETRY_EXCHANGE, ConsumerQueue

log = get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"
DATABASE_PROBE_MAX_DELAY = 10.0


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("message_id", Text, primary_key=True),
        Column("event_type", Text, nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True)
class EventMeta:
    event_id: str
    event_type: str
    correlation_id: str | None
    occurred_at: datetime | None
    attempt: int


Handler = Callable[[AsyncConnection, Any, EventMeta], Awaitable[None]]


def header_int(headers: Any, name: str, default: int = 0) -> int:
    """An integer AMQP header; anything else (missing, garbage) counts as ``default``."""
    value = (headers or {}).get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class PoisonMessage(Exception):
    """The message can never be handled (unknown type, invalid body): dead-letter it at once."""


class EventConsumer:
    """Subscribes one handler table to one queue, with inbox deduplication and counted, delayed retries."""

    def __init__(
        self,
        *,
        queue: ConsumerQueue,
        handlers: dict[str, Handler],
        inbox: Table,
        session_factory: SessionFactory,
        max_attempts: int = 5,
        prefetch: int = 32,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = handlers
        self.inbox = inbox
        self.session_factory = session_factory
        self.max_attempts = max_attempts
        self.prefetch = prefetch
        self.after_commit = after_commit
        self.health: WorkerHealth | None = None
        self._broker: RabbitBroker | None = None
        self._subscriber: Any = None
        self._retry_exchange = RabbitExchange(RETRY_EXCHANGE, type=ExchangeType.DIRECT, declare=False)
        self._database_up = asyncio.Event()
        self._database_up.set()
        self._probe: asyncio.Task[None] | None = None

    @property
    def worker_name(self) -> str:
        return f"consumer:{self.queue.name}"

    def subscribe(self, broker: RabbitBroker) -> None:
        self._broker = broker
        self._subscriber = broker.subscriber(
            RabbitQueue(self.queue.name, queue_type=QueueType.QUORUM, declare=False),
            ack_policy=AckPolicy.MANUAL,
            channel=Channel(prefetch_count=self.prefetch),
        )
        self._subscriber(self._on_message)

    def is_consuming(self) -> bool:
        """True while the broker delivers this queue to us: False after the broker cancelled our consumer
        (its queue was deleted) or the channel is gone and was not restored."""
        queue = getattr(self._subscriber, "_queue_obj", None)
        tag = getattr(self._subscriber, "_consumer_tag", None)
        if queue is None or tag is None:
            return False
        underlay = getattr(queue.channel, "_channel", None)  # aio-pika's UnderlayChannel, None when closed
        channel = getattr(underlay, "channel", None)
        if channel is None or channel.is_closed:
            return False
        return tag in channel.consumers

    @property
    def database_available(self) -> bool:
        return self._database_up.is_set()

    async def close(self) -> None:
        if self._probe is not None:
            await cancel_and_wait(self._probe)
            self._probe = None

    async def _on_message(self, message: RabbitMessage) -> None:
        raw = message.raw_message
        event_type = raw.type or raw.routing_key or ""
        attempt = header_int(raw.headers, ATTEMPT_HEADER, default=1)
        token = correlation_id_var.set(raw.correlation_id)
        try:
            try:
                applied = await self._process_when_database_answers(
                    body=raw.body,
                    meta=EventMeta(
                        event_id=raw.message_id or "",
                        event_type=event_type,
                        correlation_id=raw.correlation_id,
                        occurred_at=raw.timestamp,
                        attempt=attempt,
                    ),
                )
                await message.ack()
                MESSAGES_CONSUMED.labels(self.queue.name, "applied" if applied else "duplicate").inc()
                if self.health is not None:
                    self.health.ok(self.worker_name)
            except PoisonMessage as exc:
                log.error(
                    "poison message dead-lettered",
                    queue=self.queue.name,
                    error=str(exc),
                    event_id=raw.message_id,
                    event_type=event_type,
                )
                await message.reject(requeue=False)
                MESSAGES_CONSUMED.labels(self.queue.name, "dead_lettered").inc()
            except Exception as exc:
                await self._retry_or_dead_letter(message, attempt, exc)
        finally:
            correlation_id_var.reset(token)

    async def _process_when_database_answers(self, *, body: bytes, meta: EventMeta) -> bool:
        """``process``, held (not counted, not requeued) for as long as the database is unreachable."""
        while True:
            await self._database_up.wait()
            try:
                return await self.process(body=body, meta=meta)
            except PoisonMessage:
                raise
            except Exception as exc:
                if not is_infrastructure_error(exc):
                    raise
                self._database_lost(exc)

    def _database_lost(self, error: BaseException) -> None:
        if not self._database_up.is_set():
            return
        self._database_up.clear()
        log.warning(
            "database unreachable; consumer holds its messages until it answers",
            queue=self.queue.name,
            error=repr(error),
        )
        if self.health is not None:
            self.health.failed(self.worker_name, f"database unreachable: {error!r}"[:500])
        self._probe = asyncio.create_task(self._wait_for_database(), name=f"db-probe-{self.queue.name}")

    async def _wait_for_database(self) -> None:
        delay = 0.25
        while True:
            await asyncio.sleep(delay)
            try:
                async with self.session_factory() as session:
                    await session.execute(text("SELECT 1"))
            except Exception as exc:
                reraise_if_cancelled(exc)
                if not is_infrastructure_error(exc):
                    log.warning("database probe failed", queue=self.queue.name, error=repr(exc))
                delay = min(delay * 2, DATABASE_PROBE_MAX_DELAY)
                continue
            log.info("database answers again; consumer resumes", queue=self.queue.name)
            if self.health is not None:
                self.health.ok(self.worker_name)
            self._database_up.set()
            return

    async def process(self, *, body: bytes, meta: EventMeta) -> bool:
        """Apply one message exactly once. Returns False when it had been applied before."""
        if not meta.event_id:
            raise PoisonMessage("message has no message_id: it cannot be deduplicated")
        handler = self.handlers.get(meta.event_type)
        model = event_class(meta.event_type)
        if handler is None or model is None:
            raise PoisonMessage(f"no handler for event type {meta.event_type!r} on {self.queue.name}")
        try:
            event: IntegrationEvent = model.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            raise PoisonMessage(f"invalid {meta.event_type} body: {exc}") from exc

        async with self.session_factory() as session, session.begin():
            inserted = await session.execute(
                insert(self.inbox)
                .values(consumer=self.queue.name, message_id=meta.event_id, event_type=meta.event_type)
                .on_conflict_do_nothing()
                .returning(self.inbox.c.message_id)
            )
            if inserted.first() is None:
                log.info("duplicate message ignored", event_id=meta.event_id, queue=self.queue.name)
                return False
            await handler(session, event, meta)
        if self.after_commit:
            self.after_commit()
        return True

    async def _retry_or_dead_letter(self, message: Any, attempt: int, exc: Exception) -> None:
        raw = message.raw_message
        if attempt >= self.max_attempts:
            log.error(
                "handler failed for the last time; dead-lettering",
                queue=self.queue.name,
                attempt=attempt,
                error=repr(exc),
                event_id=raw.message_id,
            )
            await message.reject(requeue=False)
            MESSAGES_CONSUMED.labels(self.queue.name, "dead_lettered").inc()
            return
        log.warning(
            "handler failed; retrying after delay",
            queue=self.queue.name,
            attempt=attempt,
            error=repr(exc),
            event_id=raw.message_id,
        )
        assert self._broker is not None
        try:
            await self._broker.publish(
                raw.body,
                exchange=self._retry_exchange,
                routing_key=self.queue.name,
                mandatory=True,
                persist=True,
                message_id=raw.message_id,
                correlation_id=raw.correlation_id,
                message_type=raw.type,
                timestamp=raw.timestamp,
                content_type=raw.content_type,
                headers={**(raw.headers or {}), ATTEMPT_HEADER: attempt + 1},
            )
        except Exception as publish_error:
            # Could not park it for later: put it back (counts toward the queue's x-delivery-limit).
            log.warning("retry publish failed; requeueing", error=repr(publish_error))
            await message.reject(requeue=True)
            return
        await message.ack()
        MESSAGES_CONSUMED.labels(self.queue.name, "retried").inc()
