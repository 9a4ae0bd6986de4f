"""Composes one service process: HTTP API, broker with its consumers, outbox relay and periodic jobs.

Every service builds its FastAPI app with :func:`create_service_app`. The process starts serving HTTP at
once; the broker connection is made (and re-made) in the background, so a service whose broker is down
still accepts requests and stores their events in the outbox until the broker is back.

Two watches run beside the workers. The database watch notices an outage (for ``/readyz``) and, when the
database answers again, replaces the connection pool, so no request meets a connection of the old server.
The broker watch checks every few seconds, over a connection of its own, that the topology exists and that
this process's consumers are still subscribed; when the broker lost its definitions or cancelled a
consumer (its queue was deleted), or when the watch had to reconnect, it declares the topology again and
restarts the consumers. ``/readyz`` answers for what the service can accept: it needs the database, not
the broker (the outbox keeps events until the broker is back); its body, and ``/metrics``, show each
worker's health, its last success and its backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aio_pika
import aiormq.connection
from aio_pika.abc import AbstractChannel, AbstractConnection
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Table, Text, delete, func, literal_column, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import AsyncRetrying

from shared.apidocs import install_api_docs
from shared.asyncapi import asyncapi_document
from shared.auth import TokenVerifier
from shared.db import (
    SessionFactory,
    create_engine,
    create_session_factory,
    discard_connection,
    is_infrastructure_error,
)
from shared.http import DomainErrors, RequestContextMiddleware, install_error_handlers
from shared.inbox import EventConsumer, Handler
from shared.links import without_links
from shared.observability import (
    WorkerHealth,
    cancel_and_wait,
    configure_logging,
    get_logger,
    reraise_if_cancelled,
)
from shared.outbox import OUTBOX_PENDING, OutboxRelay, wake_relay_after_commit
from shared.retry import log_before_retry, wait_exponential_capped
from shared.settings import ServiceSettings
from shared.topology import QUEUES, ConsumerQueue, QueuePolicy, declare_all, declare_topology, queue_depths

log = get_logger(__name__)


# aiormq hands a connection's outgoing frames to its writer task through a queue of FRAME_BUFFER_SIZE (10)
# frames; a publish or an ack beyond that waits for the writer, that is for the event loop's next turn.
# Under HTTP load a turn takes milliseconds: the relay published about 500 events/s while the intake took
# 1,200/s, and its backlog grew for as long as the load lasted. With room for a whole pass (and a
# consumer's batch of acks), what a pass publishes goes out in the turn it is made. Every connection of
# the process (relay, FastStream's) then holds at most this many frames, about a megabyte.
AMQP_WRITE_QUEUE_FRAMES = 1024


def _make_room_for_a_relay_pass(outbox_batch_size: int) -> None:
    """Size the AMQP write queue of every connection the process opens for a whole relay pass."""
    connection = aiormq.connection.Connection
    connection.FRAME_BUFFER_SIZE = max(
        connection.FRAME_BUFFER_SIZE, AMQP_WRITE_QUEUE_FRAMES, outbox_batch_size
    )


@dataclass
class PeriodicJob:
    """A coroutine run every ``interval`` seconds; failures are logged, never fatal."""

    name: str
    interval: float
    run: Callable[[], Awaitable[object]]
    # Run once before the service starts serving (seeding): failures are logged and retried later.
    before_serving: bool = False


class Worker(Protocol):
    """A long-running part of a process with a graceful stop (the mail sender)."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Finish, or hand back, the work taken on; bounded by the worker's own grace period."""


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    engine: AsyncEngine
    session_factory: SessionFactory
    broker: RabbitBroker
    relay: OutboxRelay | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    jobs: list[PeriodicJob] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    # False for a process that neither consumes nor publishes (a mail sender of its own): it connects to
    # no broker, and its readiness does not mention one.
    uses_broker: bool = True
    # Closed when the process stops, after the workers and consumers (connections of the service's own).
    closing: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    extra_queues: tuple[ConsumerQueue, ...] = ()
    broker_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # A service's per-process caches, owned by its runtime: two runtimes in one process (two replicas
    # in a test) share nothing.
    caches: dict[str, Any] = field(default_factory=dict)
    health: WorkerHealth = field(default_factory=lambda: WorkerHealth(""))
    database_up: bool = True
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _gate: asyncio.Semaphore | None = None

    @property
    def queues(self) -> tuple[ConsumerQueue, ...]:
        return QUEUES + self.extra_queues

    @property
    def policy(self) -> QueuePolicy:
        return QueuePolicy.from_settings(self.settings)

    def consume(
        self,
        queue: ConsumerQueue,
        handlers: dict[str, Handler],
        inbox: Table,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """Add a consumer of ``queue`` with the service's consumer settings (attempts, prefetch, batch)."""
        s = self.settings
        self.consumers.append(
            EventConsumer(
                queue=queue,
                handlers=handlers,
                inbox=inbox,
                session_factory=self.session_factory,
                max_attempts=s.consumer_max_attempts,
                prefetch=s.consumer_prefetch,
                batch_size=s.consumer_batch_size,
                batch_linger=s.consumer_batch_linger_seconds,
                after_commit=after_commit,
            )
        )

    async def declare(self, channel: AbstractChannel) -> None:
        """The whole topology, on a channel of whoever just (re)connected."""
        await declare_all(channel, self.policy, self.queues)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: everything done with the session commits together, or nothing does.

        Requests queue for a database connection at a FIFO gate a little smaller than the pool: the pool's
        own queue lets newcomers overtake waiters, which under load gave a few requests ten times the
        median latency. The rest of the pool stays free for the relay, consumers and jobs.
        """
        if self._gate is None:
            self._gate = asyncio.Semaphore(max(1, self.settings.database_pool_size - 4))
        async with self._gate, self.session_factory() as session:
            # SQLAlchemy begins on the unit's first statement and the unit commits what was begun; an
            # exception closes the connection unbegun or rolled back. A unit whose only statement was
            # written by hand (the intake) thus sends neither BEGIN nor COMMIT: that statement committed
            # on its own.
            try:
                yield session
                began = session.in_transaction()
                if began:
                    await session.commit()
            except Exception as exc:
                if is_infrastructure_error(exc):
                    await discard_connection(session)
                raise
            if not began and session.info.pop(OUTBOX_PENDING, False) and self.relay is not None:
                self.relay.wake()

    async def start(self) -> None:
        for job in self.jobs:
            if job.before_serving:
                try:
                    await job.run()
                except Exception as exc:
                    log.warning("start-up job failed; will retry", job=job.name, error=repr(exc))
        for consumer in self.consumers:
            consumer.health = self.health
            self.health.register(consumer.worker_name)
        if self.uses_broker:
            self.health.register("broker")
            self._tasks.append(asyncio.create_task(self._connect_broker(), name="broker-connect"))
        self._tasks.append(asyncio.create_task(self._watch_database(), name="database-watch"))
        for job in self.jobs:
            self.health.register(f"job:{job.name}")
            self._tasks.append(asyncio.create_task(self._run_job(job), name=f"job-{job.name}"))
        for worker in self.workers:
            await worker.start()

    async def stop(self) -> None:
        # First the workers that hold claimed work (the mail sender), while the database is still open.
        for worker in self.workers:
            try:
                async with asyncio.timeout(self.settings.shutdown_grace_seconds + 5):
                    await worker.stop()
            except Exception as exc:
                log.warning("worker did not stop cleanly", worker=type(worker).__name__, error=repr(exc))
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            await cancel_and_wait(task)
        for consumer in self.consumers:
            await consumer.close()
        for close in self.closing:
            with contextlib.suppress(Exception):
                await close()
        if self.relay:
            await self.relay.stop()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.engine.dispose()
        # aio-pika runs its close callbacks as tasks: let them finish before the loop may close.
        await asyncio.sleep(0.05)

    async def _connect_broker(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential_capped(0.5, 15.0),
            before_sleep=log_before_retry(log, "broker connection or topology declaration failed"),
        ):
            with attempt:
                try:
                    await declare_topology(self.settings.amqp_url, self.policy, self.queues)
                    await self.broker.start()
                except Exception as exc:
                    self.health.failed("broker", exc)
                    with contextlib.suppress(Exception):
                        await self.broker.stop()
                    raise
        self.broker_ready.set()
        self.health.ok("broker")
        log.info("broker connected", service=self.settings.service_name)
        if self.relay:
            # Started only now: until the broker answers, events wait safely in the outbox.
            await self.relay.start()
        self._tasks.append(asyncio.create_task(self._watch_broker(), name="broker-watch"))

    async def _watch_broker(self) -> None:
        """Topology present and consumers subscribed, checked over a connection of the watch's own."""
        connection: AbstractConnection | None = None
        reconnected = False
        try:
            while True:
                await asyncio.sleep(self.settings.broker_watch_interval)
                try:
                    if connection is None or connection.is_closed:
                        connection = await aio_pika.connect(self.settings.amqp_url, timeout=10)
                    await self._check_broker(connection, reconnected)
                    reconnected = False
                    self.health.ok("broker")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    log.warning("broker check failed", error=repr(exc), service=self.settings.service_name)
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

    async def _check_broker(self, connection: AbstractConnection, reconnected: bool) -> None:
        depths = await queue_depths(connection, self.queues)
        lost = [c.queue.name for c in self.consumers if not c.is_consuming()]
        if depths is None or lost or reconnected:
            log.warning(
                "declaring the topology again",
                service=self.settings.service_name,
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
                log.info("consumers subscribed again", service=self.settings.service_name, queues=lost)
            depths = await queue_depths(connection, self.queues)
        for consumer in self.consumers:
            if depths is not None:
                self.health.backlog(consumer.worker_name, depths.get(consumer.queue.name, 0))
                self.health.backlog(
                    f"{consumer.worker_name}.dlq", depths.get(consumer.queue.dead_letter_queue, 0)
                )

    async def _watch_database(self) -> None:
        while True:
            await asyncio.sleep(self.settings.database_watch_interval)
            up = await self.database_ready()
            if up:
                self.health.ok("database")
                if not self.database_up:
                    # Every pooled connection belongs to the server that went away (or its restart):
                    # start afresh rather than fail one request per stale connection.
                    log.info("database answers again; replacing the connection pool")
                    with contextlib.suppress(Exception):
                        await self.engine.dispose()
            else:
                self.health.failed("database", "database unreachable")
            self.database_up = up

    async def housekeeping(self) -> None:
        """Delete published outbox rows and old inbox rows (the dedup window is the inbox retention)."""
        now = datetime.now(UTC)
        async with self.transaction() as session:
            if self.relay is not None:
                table = self.relay.outbox
                await session.execute(
                    delete(table).where(
                        table.c.published_at < now - timedelta(hours=self.settings.outbox_retention_hours)
                    )
                )
                # What stays until then keeps no working link (a value carrying a token becomes null) once
                # it has been published for a minute (a replay of what just went out still has it).
                await session.execute(
                    update(table)
                    .where(table.c.published_at < now - timedelta(minutes=1))
                    .where(func.strpos(table.c.payload.cast(Text), "token=") > 0)
                    .values(payload=literal_column(without_links("payload")))
                )
            for inbox in {id(c.inbox): c.inbox for c in self.consumers}.values():
                await session.execute(
                    delete(inbox).where(
                        inbox.c.received_at < now - timedelta(days=self.settings.inbox_retention_days)
                    )
                )

    async def _run_job(self, job: PeriodicJob) -> None:
        if job.before_serving:
            await asyncio.sleep(job.interval)
        while True:
            try:
                await job.run()
                self.health.ok(f"job:{job.name}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reraise_if_cancelled(exc)
                log.warning("periodic job failed", job=job.name, error=repr(exc))
                self.health.failed(f"job:{job.name}", exc)
            await asyncio.sleep(job.interval)

    async def database_ready(self) -> bool:
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

    async def broker_reachable(self) -> bool:
        """The broker watch's last verdict (at most ``broker_watch_interval`` old): asking the broker here
        would make ``/readyz`` wait for a timeout during every outage."""
        if not self.broker_ready.is_set():
            return False
        state = self.health.workers.get("broker")
        return state is None or state.healthy


def build_runtime(
    settings: ServiceSettings,
    *,
    outbox: Table | None,
) -> ServiceRuntime:
    settings.refuse_unsafe()
    _make_room_for_a_relay_pass(settings.outbox_batch_size)  # before any connection is opened
    engine = create_engine(
        settings.database_url,
        settings.db_schema,
        settings.database_pool_size,
        statement_timeout_ms=settings.database_statement_timeout_ms,
    )
    session_factory = create_session_factory(engine)
    broker = RabbitBroker(
        settings.amqp_url,
        # Unroutable mandatory publishes must raise; confirms alone would report them as success.
        default_channel=Channel(on_return_raises=True, publisher_confirms=True),
        app_id=f"mitwirkung-{settings.service_name}",
        # Per-message "Received"/"Processed" lines at DEBUG, into our JSON logs (warnings and errors only).
        logger=logging.getLogger("mitwirkung.broker"),
        log_level=logging.DEBUG,
        graceful_timeout=10,
        # No dependency injection for the subscribers: each gets the message itself (see
        # inbox.EventConsumer.subscribe). FastStream resolved the message annotation in a worker thread
        # for every message, which cost more than the handler's own Python work.
        apply_types=False,
    )
    runtime = ServiceRuntime(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        broker=broker,
        health=WorkerHealth(settings.service_name),
    )
    runtime.health.register("database")
    if outbox is not None:
        runtime.relay = OutboxRelay(
            service=settings.service_name,
            outbox=outbox,
            session_factory=session_factory,
            amqp_url=settings.amqp_url,
            database_url=settings.database_url,
            poll_interval=settings.outbox_poll_interval,
            batch_size=settings.outbox_batch_size,
            publish_timeout=settings.outbox_publish_timeout,
            declare=runtime.declare,
            health=runtime.health,
        )
        runtime.health.register(runtime.relay.worker_name)
        wake_relay_after_commit(engine, runtime.relay)
    runtime.jobs.append(PeriodicJob("housekeeping", settings.housekeeping_interval, runtime.housekeeping))
    return runtime


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    publishes: Sequence[str] = (),
    consumes: Sequence[ConsumerQueue] = (),
    domain_errors: DomainErrors | None = None,
) -> FastAPI:
    settings = runtime.settings
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    for consumer in runtime.consumers:
        consumer.subscribe(runtime.broker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # /docs from the service's own files (shared.apidocs); no ReDoc, which loads from a CDN.
    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_api_docs(app, title)
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    install_error_handlers(app, domain_errors)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=[
                "Content-Type",
                "Idempotency-Key",
                "Authorization",
                "If-Match",
                "X-Correlation-ID",
            ],
        )
    app.add_middleware(
        RequestContextMiddleware, service=settings.service_name, max_body_bytes=settings.max_body_bytes
    )

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        # Ready means: what this service accepts is stored. That needs the database; it does not need
        # the broker, whose absence the outbox absorbs (and the body reports).
        checks = {"database": await runtime.database_ready()}
        if runtime.uses_broker:
            checks["broker"] = await runtime.broker_reachable()
        ok = checks["database"]
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks, "workers": runtime.health.report()},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["operations"])
    async def asyncapi() -> dict:
        return asyncapi_document(title, publishes=publishes, consumes=consumes)

    for router in routers:
        app.include_router(router)
    return app
