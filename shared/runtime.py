"""Composes one service process: HTTP API, broker with its consumers, outbox relay and periodic jobs.

Every service builds its FastAPI app with :func:`create_service_app`. The process starts serving HTTP at
once; the broker connection is made (and re-made) in the background, so a service whose broker is down
still accepts requests and stores their events in the outbox until the broker is back.

Its pieces are owned elsewhere: the unit of work and its gate (:mod:`shared.transactions`), the database
and broker watches (:mod:`shared.watches`), what the outbox and inbox keep (:mod:`shared.housekeeping`).
``/readyz`` answers for what the service can accept: it needs the database, not the broker (the outbox
keeps events until the broker is back); its body, and ``/metrics``, show each worker's health, its last
success and its backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, Self

import aiormq.connection
from aio_pika.abc import AbstractChannel
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import AsyncRetrying

from shared.apidocs import install_api_docs
from shared.asyncapi import asyncapi_document
from shared.auth import TokenVerifier
from shared.db import SessionFactory, create_engine, create_session_factory
from shared.housekeeping import forget_published, forget_received
from shared.http import DomainErrors, RequestContextMiddleware, install_error_handlers
from shared.inbox import EventConsumer, Handler
from shared.observability import (
    WorkerHealth,
    cancel_and_wait,
    configure_logging,
    get_logger,
    reraise_if_cancelled,
)
from shared.outbox import OutboxRelay, wake_relay_after_commit
from shared.retry import log_before_retry, wait_exponential_capped
from shared.settings import ServiceSettings
from shared.topology import QUEUES, ConsumerQueue, QueuePolicy, declare_all, declare_topology
from shared.transactions import Transactions
from shared.watches import BrokerWatch, DatabaseWatch

log = get_logger(__name__)


# aiormq hands a connection's outgoing frames to its writer task through a queue of FRAME_BUFFER_SIZE (10)
# frames; a publish or an ack beyond that waits for the writer, that is for the event loop's next turn,
# and under HTTP load the relay would then fall behind the intake. With room for a whole relay pass (and a
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
    health: WorkerHealth = field(default_factory=lambda: WorkerHealth(""))
    transactions: Transactions = field(init=False)
    database: DatabaseWatch = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.transactions = Transactions(self.session_factory, self.settings.database_pool_size)
        self.database = DatabaseWatch(self.engine, self.settings.database_watch_interval, self.health)

    @classmethod
    def build(cls, settings: ServiceSettings, *, outbox: Table | None) -> Self:
        """The runtime of one service process: its pool, its broker, its outbox relay and housekeeping.

        A service that keeps state of its own per process subclasses the runtime with typed attributes
        and builds it with ``build`` (``services.registration.runtime``).
        """
        settings.refuse_unsafe()
        _make_room_for_a_relay_pass(settings.outbox_batch_size)  # before any connection is opened
        engine = create_engine(
            settings.database_url,
            settings.db_schema,
            settings.database_pool_size,
            statement_timeout_ms=settings.database_statement_timeout_ms,
        )
        runtime = cls(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            broker=_broker(settings),
            health=WorkerHealth(settings.service_name),
        )
        runtime.health.register("database")
        if outbox is not None:
            runtime.relay = OutboxRelay(
                service=settings.service_name,
                outbox=outbox,
                session_factory=runtime.session_factory,
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

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One unit of work (:mod:`shared.transactions`): everything in it commits together, or nothing does."""
        return self.transactions.unit(self.relay)

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
        self._tasks.append(asyncio.create_task(self.database.run(), name="database-watch"))
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
        watch = BrokerWatch(
            service=self.settings.service_name,
            amqp_url=self.settings.amqp_url,
            interval=self.settings.broker_watch_interval,
            broker=self.broker,
            consumers=self.consumers,
            queues=self.queues,
            declare=self.declare,
            health=self.health,
        )
        self._tasks.append(asyncio.create_task(watch.run(), name="broker-watch"))

    async def housekeeping(self) -> None:
        """Forget published outbox rows and old inbox rows (:mod:`shared.housekeeping`)."""
        now = datetime.now(UTC)
        settings = self.settings
        async with self.transaction() as conn:
            if self.relay is not None:
                keep = timedelta(hours=settings.outbox_retention_hours)
                await forget_published(conn, self.relay.outbox, now=now, keep=keep)
            inboxes = [c.inbox for c in self.consumers]
            await forget_received(conn, inboxes, now=now, keep=timedelta(days=settings.inbox_retention_days))

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

    async def broker_reachable(self) -> bool:
        """The broker watch's last verdict (at most ``broker_watch_interval`` old): asking the broker here
        would make ``/readyz`` wait for a timeout during every outage."""
        if not self.broker_ready.is_set():
            return False
        state = self.health.workers.get("broker")
        return state is None or state.healthy


def build_runtime(settings: ServiceSettings, *, outbox: Table | None) -> ServiceRuntime:
    return ServiceRuntime.build(settings, outbox=outbox)


def _broker(settings: ServiceSettings) -> RabbitBroker:
    return RabbitBroker(
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


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    publishes: Sequence[str] = (),
    consumes: Sequence[ConsumerQueue] = (),
    domain_errors: DomainErrors | None = None,
    page_csp: str | None = None,
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
        RequestContextMiddleware,
        service=settings.service_name,
        max_body_bytes=settings.max_body_bytes,
        frame_ancestors=settings.frame_ancestors,
        page_csp=page_csp,
    )

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        # Ready means: what this service accepts is stored. That needs the database; it does not need
        # the broker, whose absence the outbox absorbs (and the body reports).
        checks = {"database": await runtime.database.ready()}
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
