"""Idempotent consumers: the inbox, and the one subscriber wrapper every service uses.

For each message the consumer inserts ``(consumer, message_id)`` into its service's inbox table and runs
the handler in the same transaction. A redelivered message finds its row and changes nothing. A handler
that fails is retried after a delay (republished to ``<queue>.retry``); after ``max_attempts`` the
message is rejected and dead-lettered to ``<queue>.dlq``. A message that cannot be parsed goes there at
once: retrying it cannot help.

Under load, messages waiting together are applied as one batch (``batch_size``, group commit: one
transaction, one multi-row inbox INSERT, every handler in arrival order, one commit). If any handler of a
batch fails, the batch rolls back and each of its messages is handled on its own as above, so one bad
message costs the others nothing but a second try.

A database that cannot be reached is not the message's fault: such an error (see
:func:`shared.db.is_infrastructure_error`) never counts as an attempt and never dead-letters anything. The
consumer keeps the message, waits until the database answers again (one probe with backoff for the whole
consumer, not one per message) and then handles it. Requeueing instead would count toward the quorum
queue's ``x-delivery-limit`` on every round and dead-letter the backlog of a long outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.rabbit import Channel, ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import SessionFactory, deferred_writes, is_infrastructure_error
from shared.events import IntegrationEvent, event_class
from shared.observability import (
    MESSAGES_CONSUMED,
    WorkerHealth,
    cancel_and_wait,
    correlation_id_var,
    get_logger,
    reraise_if_cancelled,
)
from shared.retry import exponential_delay
from shared.topology import RETRY_EXCHANGE, ConsumerQueue

log = get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"
DATABASE_PROBE_FIRST_DELAY = 0.25
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


async def _the_message(message: Any) -> Any:
    return message


def header_int(headers: Any, name: str, default: int = 0) -> int:
    """An integer AMQP header; anything else (missing, garbage) counts as ``default``."""
    value = (headers or {}).get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


_T = TypeVar("_T")


@dataclass(frozen=True)
class _Item:
    """A parsed message: what applying it needs."""

    meta: EventMeta
    event: IntegrationEvent
    handler: Handler


def _meta(message: RabbitMessage) -> EventMeta:
    raw = message.raw_message
    return EventMeta(
        event_id=raw.message_id or "",
        event_type=raw.type or raw.routing_key or "",
        correlation_id=raw.correlation_id,
        occurred_at=raw.timestamp,
        attempt=header_int(raw.headers, ATTEMPT_HEADER, default=1),
    )


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
        batch_size: int = 1,
        batch_linger: float = 0.0,
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
        self.batch_size = batch_size
        self.batch_linger = batch_linger
        # Each waiting message with the future its delivery awaits and the loop time it arrived.
        self._waiting: list[tuple[RabbitMessage, asyncio.Future[None], float]] = []
        self._batcher: asyncio.Task[None] | None = None
        self._counters: dict[str, Any] = {}
        # Built once; run with the rows of a batch (one multi-row INSERT), or the one row of ``process``.
        self._inbox_insert = insert(inbox).on_conflict_do_nothing().returning(inbox.c.message_id)

    @property
    def worker_name(self) -> str:
        return f"consumer:{self.queue.name}"

    def subscribe(self, broker: RabbitBroker) -> None:
        self._broker = broker
        self._subscriber = broker.subscriber(
            RabbitQueue(self.queue.name, queue_type=QueueType.QUORUM, declare=False),
            ack_policy=AckPolicy.MANUAL,
            channel=Channel(prefetch_count=self.prefetch),
            # The handler is called with what the decoder returns: the message itself, undecoded (the
            # body is parsed once, into the event's model, in ``process``).
            decoder=_the_message,
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

    async def close(self) -> None:
        if self._probe is not None:
            await cancel_and_wait(self._probe)
            self._probe = None

    async def _on_message(self, message: RabbitMessage) -> None:
        if self.batch_size <= 1:
            await self._handle_one(message)
            return
        # Group commit: the message waits in the batch; whatever arrived while the last batch was being
        # applied goes into the next one (up to ``batch_size``), so a busy queue costs one transaction per
        # batch; a batch that is not full begins ``batch_linger`` (10 ms by default) after its oldest
        # message arrived, so that more can join it.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append((message, future, loop.time()))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._drain(), name=f"batch-{self.queue.name}")
        await asyncio.shield(future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            if len(self._waiting) < self.batch_size:
                # Messages that waited through the last batch have lingered already.
                linger = self._waiting[0][2] + self.batch_linger - loop.time()
                if linger > 0:
                    await asyncio.sleep(linger)
            batch = self._waiting[: self.batch_size]
            self._waiting = self._waiting[self.batch_size :]
            try:
                await self._handle_batch([message for message, _, _ in batch])
            finally:
                for _, future, _ in batch:
                    if not future.done():
                        future.set_result(None)

    async def _handle_batch(self, messages: list[RabbitMessage]) -> None:
        """Apply a batch in one transaction and ack it. If any handler fails, the transaction is rolled back
        and each message is handled on its own (with its own retries and dead-lettering)."""
        parsed: list[tuple[RabbitMessage, _Item]] = []
        for message in messages:
            try:
                parsed.append((message, self._parse(message)))
            except PoisonMessage as exc:
                await self._dead_letter_poison(message, exc)
        if not parsed:
            return
        if len(parsed) == 1:  # nothing to share a transaction with (a retried message comes alone)
            await self._handle_one(parsed[0][0])
            return
        items = [item for _, item in parsed]
        try:
            applied = await self._when_database_answers(lambda: self._apply(items))
        except Exception as exc:
            log.info(
                "batch failed; handling its messages one by one",
                queue=self.queue.name,
                size=len(items),
                error=repr(exc),
            )
            for message, _ in parsed:
                await self._handle_one(message)
            return
        for (message, _), was_applied in zip(parsed, applied, strict=True):
            await message.ack()
            self._count("applied" if was_applied else "duplicate")
        if self.health is not None:
            self.health.ok(self.worker_name)

    async def _apply(self, items: list[_Item]) -> list[bool]:
        """The batch's inbox rows and handlers in one transaction; per item, whether it was applied (False:
        applied before, or a second copy of the same message in this batch)."""
        async with self.session_factory() as session, session.begin(), deferred_writes(session):
            rows = [
                {"consumer": self.queue.name, "message_id": i.meta.event_id, "event_type": i.meta.event_type}
                for i in items
            ]
            new = set((await session.execute(self._inbox_insert, rows)).scalars())
            applied = []
            for item in items:
                fresh = item.meta.event_id in new
                new.discard(item.meta.event_id)
                if fresh:
                    token = correlation_id_var.set(item.meta.correlation_id)
                    try:
                        await item.handler(session, item.event, item.meta)
                    finally:
                        correlation_id_var.reset(token)
                applied.append(fresh)
        if self.after_commit:
            self.after_commit()
        return applied

    def _parse(self, message: RabbitMessage) -> _Item:
        meta = _meta(message)
        event, handler = self._parse_body(message.raw_message.body, meta)
        return _Item(meta, event, handler)

    async def _dead_letter_poison(self, message: RabbitMessage, exc: PoisonMessage) -> None:
        raw = message.raw_message
        log.error(
            "poison message dead-lettered",
            queue=self.queue.name,
            error=str(exc),
            event_id=raw.message_id,
            event_type=raw.type or raw.routing_key or "",
        )
        await message.reject(requeue=False)
        self._count("dead_lettered")

    def _count(self, outcome: str) -> None:
        counter = self._counters.get(outcome)
        if counter is None:
            counter = self._counters[outcome] = MESSAGES_CONSUMED.labels(self.queue.name, outcome)
        counter.inc()

    async def _handle_one(self, message: RabbitMessage) -> None:
        raw = message.raw_message
        meta = _meta(message)
        token = correlation_id_var.set(raw.correlation_id)
        try:
            try:
                applied = await self._when_database_answers(lambda: self.process(body=raw.body, meta=meta))
                await message.ack()
                self._count("applied" if applied else "duplicate")
                if self.health is not None:
                    self.health.ok(self.worker_name)
            except PoisonMessage as exc:
                await self._dead_letter_poison(message, exc)
            except Exception as exc:
                await self._retry_or_dead_letter(message, meta.attempt, exc)
        finally:
            correlation_id_var.reset(token)

    async def _when_database_answers(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """``work``, held (not counted, not requeued) for as long as the database is unreachable."""
        while True:
            await self._database_up.wait()
            try:
                return await work()
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
            # The class only: its message (host, port) goes to the log.
            self.health.failed(self.worker_name, error)
        self._probe = asyncio.create_task(self._wait_for_database(), name=f"db-probe-{self.queue.name}")

    async def _wait_for_database(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            await asyncio.sleep(
                exponential_delay(attempt, DATABASE_PROBE_FIRST_DELAY, DATABASE_PROBE_MAX_DELAY)
            )
            try:
                async with self.session_factory() as session:
                    await session.execute(text("SELECT 1"))
            except Exception as exc:
                reraise_if_cancelled(exc)
                if not is_infrastructure_error(exc):
                    log.warning("database probe failed", queue=self.queue.name, error=repr(exc))
                continue
            log.info("database answers again; consumer resumes", queue=self.queue.name)
            if self.health is not None:
                self.health.ok(self.worker_name)
            self._database_up.set()
            return

    def _parse_body(self, body: bytes, meta: EventMeta) -> tuple[IntegrationEvent, Handler]:
        if not meta.event_id:
            raise PoisonMessage("message has no message_id: it cannot be deduplicated")
        handler = self.handlers.get(meta.event_type)
        model = event_class(meta.event_type)
        if handler is None or model is None:
            raise PoisonMessage(f"no handler for event type {meta.event_type!r} on {self.queue.name}")
        try:
            return model.model_validate_json(body), handler
        except (ValueError, ValidationError) as exc:
            raise PoisonMessage(f"invalid {meta.event_type} body: {exc}") from exc

    async def process(self, *, body: bytes, meta: EventMeta) -> bool:
        """Apply one message exactly once. Returns False when it had been applied before."""
        event, handler = self._parse_body(body, meta)
        if not (await self._apply([_Item(meta, event, handler)]))[0]:
            log.info("duplicate message ignored", event_id=meta.event_id, queue=self.queue.name)
            return False
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
