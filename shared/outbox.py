"""The transactional outbox and its relay.

A use case adds its events with :func:`add_event` (every row made by :func:`stage_event`) in the same transaction as its domain change, so both
commit or neither does. The relay publishes unpublished rows to RabbitMQ with publisher confirms and
``mandatory`` (an unroutable publish raises instead of vanishing), then marks them published. Rows are
claimed with ``FOR UPDATE SKIP LOCKED``, so several replicas can relay side by side without publishing a
row twice at the same time.

Waking up: a commit that added outbox rows wakes its own process's relay at once (an ``after_commit``
hook on the session factory). Other replicas are woken by ``LISTEN/NOTIFY``, sent by the relay at most
every ``notify_interval`` seconds and not by the business transaction itself: a NOTIFY inside a
transaction takes a database-wide lock through its commit, which would serialise every business
transaction behind it (a trigger notifying on every insert did). Polling is the fallback, since a
notification is lost while nobody listens.

A relay that dies after publishing and before marking publishes the row again on its next run: delivery
is at-least-once, and consumers deduplicate by the event id (the AMQP ``message_id``, see ``inbox``).

Two kinds of failure are kept apart. A failure of one message (the broker returned it as unroutable, or
nacked it) backs that row off, so it never holds up the rows behind it. A failure of the connection (broker
down, channel closed, no confirm in time) is nobody's row: the rows stay exactly as they were, the relay
drops its connection, waits, and tries again in creation order; on every new connection it declares the
topology first, so a broker that lost its definitions is set up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aio_pika
import aiormq
import asyncpg
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import DeliveryError
from pamqp.commands import Basic
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import DatabaseSignal, SessionFactory, driver_connection, is_infrastructure_error
from shared.events import IntegrationEvent
from shared.observability import (
    OUTBOX_BACKLOG,
    OUTBOX_FAILURES,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISHED,
    WorkerHealth,
    cancel_and_wait,
    current_correlation_id,
    get_logger,
    reraise_if_cancelled,
)
from shared.retry import exponential_delay
from shared.topology import EVENTS_EXCHANGE

log = get_logger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("seq", BigInteger, Identity(always=True), nullable=False),
        Column("event_type", Text, nullable=False),
        Column("event_version", Integer, nullable=False, server_default=text("1")),
        Column("payload", JSONB, nullable=False),
        Column("correlation_id", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        # A row that failed waits before its next try (exponential, at most five minutes), so that rows
        # nobody can take (an event type no queue is bound to) never hold up the ones behind them.
        Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("last_error", Text, nullable=True),
        Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
    )


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An event's outbox row: what :func:`add_event` inserts, or a statement of its own inserts (see
    :func:`stage_from`)."""

    id: uuid.UUID
    event_type: str
    event_version: int
    payload: dict[str, Any]
    correlation_id: str | None

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

    def parameters(self) -> tuple[Any, ...]:
        """The five values for :func:`stage_from`'s parameters, the payload as JSON text."""
        payload = orjson.dumps(self.payload).decode()
        return (self.id, self.event_type, self.event_version, payload, self.correlation_id)


def stage_event(
    session: AsyncConnection, event: IntegrationEvent, *, correlation_id: str | None = None
) -> OutboxRow:
    """The one way an event becomes an outbox row: its id, type, version, payload and correlation id. The
    session is marked, so its commit wakes the relay."""
    session.info[OUTBOX_PENDING] = True
    payload = event.model_dump(mode="json")
    correlation_id = correlation_id or current_correlation_id()
    return OutboxRow(uuid.uuid4(), event.event_type, event.version, payload, correlation_id)


async def add_event(
    session: AsyncConnection, outbox: Table, event: IntegrationEvent, *, correlation_id: str | None = None
) -> uuid.UUID:
    """Stage ``event`` for publishing in the caller's transaction. Returns the event id."""
    row = stage_event(session, event, correlation_id=correlation_id)
    await session.execute(_insert_statement(outbox), row.values())
    return row.id


def stage_from(outbox: Table, source: str, first: int) -> str:
    """``INSERT INTO <outbox> … SELECT <OutboxRow.parameters() as $first…> FROM <source>``: for a statement
    written by hand that inserts the event row together with the domain change, only when ``source`` (a
    CTE of the same statement) yields a row."""
    p = [f"${first + i}" for i in range(5)]
    return (
        f"INSERT INTO {outbox.fullname} (id, event_type, event_version, payload, correlation_id) "
        f"SELECT {p[0]}::uuid, {p[1]}::text, {p[2]}::int, {p[3]}::jsonb, {p[4]}::text FROM {source} "
        "RETURNING id"
    )


_INSERTS: dict[int, Any] = {}


def _insert_statement(outbox: Table) -> Any:
    """One INSERT per outbox table, built once (building statements per call is costly on the hot path)."""
    if id(outbox) not in _INSERTS:
        _INSERTS[id(outbox)] = outbox.insert()
    return _INSERTS[id(outbox)]


# Set on a unit of work's connection when it staged events: its commit wakes the relay.
OUTBOX_PENDING = "mitwirkung_outbox_pending"


def wake_relay_after_commit(engine: AsyncEngine, relay: OutboxRelay) -> None:
    """Wake ``relay`` whenever a transaction on this service's engine commits outbox rows."""

    def after_commit(connection: Connection) -> None:
        if connection.info.pop(OUTBOX_PENDING, False):
            relay.wake()

    def after_rollback(connection: Connection) -> None:
        connection.info.pop(OUTBOX_PENDING, None)

    event.listen(engine.sync_engine, "commit", after_commit)
    event.listen(engine.sync_engine, "rollback", after_rollback)


class OutboxRelay:
    """Publishes a service's outbox rows; run one per process, as many processes as you like."""

    def __init__(
        self,
        *,
        service: str,
        outbox: Table,
        session_factory: SessionFactory,
        amqp_url: str,
        database_url: str,
        poll_interval: float = 2.0,
        batch_size: int = 100,
        publish_timeout: float = 10.0,
        exchange: str = EVENTS_EXCHANGE,
        notify_interval: float = 0.2,
        declare: Callable[[AbstractChannel], Awaitable[None]] | None = None,
        health: WorkerHealth | None = None,
    ) -> None:
        self.service = service
        self.outbox = outbox
        self.session_factory = session_factory
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self.exchange_name = exchange
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        # Declares the topology on every new connection (a broker may have lost its definitions).
        self.declare = declare
        self.health = health
        self.notify_interval = notify_interval
        self._sql = _RelayStatements(outbox.fullname)
        self._wake = asyncio.Event()
        self._woken_locally = False
        self._last_notify = 0.0
        self._last_backlog = 0.0
        self._signal = DatabaseSignal(database_url, notify_channel(outbox.schema or "public"))
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)
        await self._signal.close()
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def wake(self) -> None:
        """Called after a local commit added rows."""
        self._woken_locally = True
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._ensure_listener()
            await self._notify_other_replicas()
            try:
                published = await self.relay_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or broker down: wait and try again, never die
                reraise_if_cancelled(exc)
                log.warning("outbox relay iteration failed", error=str(exc), service=self.service)
                if self.health is not None and not isinstance(exc, RowsFailed):
                    self.health.failed(self.worker_name, exc)
                published = 0
                failures += 1
            if published >= self.batch_size:
                continue  # more waiting; do not sleep
            if failures:
                # Database or broker away: commits must not wake us into a connection attempt each. The
                # waits stay short (at most 5 s), so the backlog goes out, in order, soon after it is back.
                await asyncio.sleep(exponential_delay(failures + 1, self.poll_interval, 5.0))
                self._wake.clear()
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races with
            # the event being set, and the relay would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            # Let a burst of commits gather into one batch.
            await asyncio.sleep(0.005)

    # -- one pass --------------------------------------------------------------------------------------

    @property
    def worker_name(self) -> str:
        return "outbox-relay"

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published.

        Raises :class:`BrokerUnavailable` (after marking what did go out) when the connection failed, and
        :class:`RowsFailed` when every row of the batch failed on its own.

        The statements are written for asyncpg (one transaction on the unit's driver connection): the relay
        runs for every event of every service, and SQLAlchemy's layers cost more than the publish."""
        sql = self._sql
        async with self.session_factory() as session:
            db = await driver_connection(session)
            try:
                async with db.transaction():
                    rows = await db.fetch(sql.claim, self.batch_size)
                    connection_error: BaseException | None = None
                    ok: list[uuid.UUID] = []
                    if rows:
                        ok, connection_error = await self._publish_all(db, rows)
                    if time.monotonic() - self._last_backlog >= 1.0 or not rows:
                        self._last_backlog = time.monotonic()
                        backlog, oldest = await db.fetchrow(sql.backlog)
                        OUTBOX_BACKLOG.labels(self.service).set(backlog or 0)
                        OUTBOX_OLDEST_AGE.labels(self.service).set(max(0.0, float(oldest or 0)))
                        if self.health is not None:
                            self.health.backlog(self.worker_name, backlog or 0)
            except BaseException as exc:
                if is_infrastructure_error(exc):
                    await session.invalidate()  # the pool must not hand out a broken connection
                raise
        if connection_error is not None:
            await self._drop_connection()
            raise BrokerUnavailable(f"connection failed while publishing: {_describe(connection_error)}")
        if self.health is not None:
            self.health.ok(self.worker_name)
        if rows and not ok:
            # Every row failed on its own (unroutable, nacked): let the caller back off.
            raise RowsFailed(f"{len(rows)} outbox rows could not be published")
        return len(ok)

    async def _publish_all(
        self, db: asyncpg.Connection, rows: list[asyncpg.Record]
    ) -> tuple[list[uuid.UUID], BaseException | None]:
        """Publish ``rows`` with their confirms in flight together; mark what went out, back off what failed
        on its own. Returns the published ids and the connection's failure, if any."""
        try:
            channel = await self._publishing_channel()
        except Exception as exc:
            reraise_if_cancelled(exc)
            await self._drop_connection()
            raise BrokerUnavailable(f"cannot reach the broker: {_describe(exc)}") from exc
        results = await asyncio.gather(*(self._publish(channel, row) for row in rows), return_exceptions=True)
        ok = [row["id"] for row, result in zip(rows, results, strict=True) if result is None]
        # Only a message's own failure backs its row off; a connection failure leaves rows alone.
        failed = [
            (row, r)
            for row, r in zip(rows, results, strict=True)
            if isinstance(r, BaseException) and _is_message_failure(r)
        ]
        connection_error = next((r for r in results if r is not None and not _is_message_failure(r)), None)
        await self._mark_published(db, ok)
        for row, error in failed:
            await db.execute(
                self._sql.back_off, row["id"], _describe(error)[:2000], retry_delay(row["attempts"] + 1)
            )
        OUTBOX_PUBLISHED.labels(self.service).inc(len(ok))
        if failed:
            OUTBOX_FAILURES.labels(self.service).inc(len(failed))
            log.warning(
                "outbox publish failed",
                service=self.service,
                failed=len(failed),
                error=_describe(failed[0][1]),
                event_id=str(failed[0][0]["id"]),
            )
        return ok, connection_error

    async def _publishing_channel(self) -> aiormq.Channel:
        """The relay's own channel: publisher confirms, and an unroutable ``mandatory`` publish raises.

        The relay talks to aio-pika's connection and aiormq's channel directly rather than through
        FastStream's publisher: it is the hottest path of every producing service, and FastStream's
        per-message layers cost about a tenth of the CPU of a confirmation request. Consumers stay on
        FastStream.
        """
        if self._channel is not None and self._connection is not None and not self._connection.is_closed:
            return cast(aiormq.Channel, await self._channel.get_underlay_channel())
        await self._drop_connection()
        # A plain connection, not a robust one: a lost connection surfaces as an error here, and the next
        # pass connects afresh and declares the topology again.
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        try:
            if self.declare is not None:
                declaring = await connection.channel()
                await self.declare(declaring)
                await declaring.close()
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._channel = connection, channel
        return underlay

    async def _publish(self, channel: aiormq.Channel, row: asyncpg.Record) -> None:
        """One publish, on aiormq's channel under aio-pika's: with ``wait=False`` a publish does not hold the
        channel's lock until its frames are written out, so a batch's publishes go out back to back (the
        connection's write queue holds a whole pass: see ``AMQP_WRITE_QUEUE_FRAMES`` in ``shared.runtime``) and
        their confirms are awaited together. The confirm is what counts: only a confirmed row is marked."""
        properties = aio_pika.Message(
            b"",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(row["id"]),
            correlation_id=row["correlation_id"],
            type=row["event_type"],
            timestamp=row["created_at"],
            content_type="application/json",
            headers={"x-event-version": row["event_version"], "x-producer": self.service},
        ).properties
        confirmation = await channel.basic_publish(
            row["payload"].encode(),  # the stored JSON as Postgres writes it out: no decode, no encode
            exchange=self.exchange_name,
            routing_key=row["event_type"],
            properties=properties,
            mandatory=True,
            timeout=self.publish_timeout,
            wait=False,
        )
        if confirmation is not None and not _is_ack(confirmation):
            raise NotConfirmed(f"broker did not confirm the publish: {confirmation!r}")

    async def _mark_published(self, db: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
        if ids:
            await db.execute(self._sql.mark, ids, datetime.now(UTC))

    # -- LISTEN/NOTIFY ---------------------------------------------------------------------------------

    async def _ensure_listener(self) -> None:
        if not await self._signal.listen(self._wake.set):  # polling covers us until the database answers
            log.info("outbox listener not connected", service=self.service)

    async def _notify_other_replicas(self) -> None:
        """One NOTIFY per interval at most, and only when this process committed new rows."""
        if not self._woken_locally:
            return
        if time.monotonic() - self._last_notify < self.notify_interval:
            return
        self._woken_locally = False
        self._last_notify = time.monotonic()
        with contextlib.suppress(Exception):
            await self._signal.notify()


class _RelayStatements:
    """The relay's statements on one outbox table."""

    def __init__(self, table: str) -> None:
        self.claim = (
            "SELECT id, event_type, event_version, payload::text AS payload, correlation_id, created_at, "
            f"attempts FROM {table} WHERE published_at IS NULL AND next_attempt_at <= now() "
            "ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
        )
        self.mark = f"UPDATE {table} SET published_at = $2, last_error = NULL WHERE id = ANY($1::uuid[])"
        self.back_off = (
            f"UPDATE {table} SET attempts = attempts + 1, last_error = $2, "
            "next_attempt_at = now() + $3::interval WHERE id = $1"
        )
        # How many rows wait, and how long the first of them (by seq, the relay's order) has waited.
        self.backlog = (
            f"SELECT (SELECT count(*) FROM {table} WHERE published_at IS NULL), "
            f"(SELECT extract(epoch FROM clock_timestamp() - created_at) FROM {table} "
            "WHERE published_at IS NULL ORDER BY seq LIMIT 1)"
        )


class BrokerUnavailable(RuntimeError):
    """The connection to the broker failed: no row was backed off."""


class RowsFailed(RuntimeError):
    """Every row of a pass failed on its own (unroutable, nacked) and was backed off."""


class NotConfirmed(RuntimeError):
    """The broker nacked a publish."""


def _is_message_failure(result: BaseException) -> bool:
    """A failure that belongs to the message: returned as unroutable (``mandatory``) or nacked."""
    return isinstance(result, DeliveryError | NotConfirmed)


def _is_ack(confirmation: Any) -> bool:
    return isinstance(confirmation, Basic.Ack)


def retry_delay(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s … after each failed publish of a row, at most five minutes."""
    return timedelta(seconds=exponential_delay(attempts, 1.0, 300.0))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
