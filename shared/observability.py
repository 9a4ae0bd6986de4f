"""JSON logs that carry the correlation id, and the Prometheus metrics every service exports."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str:
    """The correlation id of the request or message being handled; a fresh one outside of both."""
    value = correlation_id_var.get()
    return value or str(uuid.uuid4())


def _add_correlation_id(_: object, __: str, event_dict: dict) -> dict:
    cid = correlation_id_var.get()
    if cid and "correlation_id" not in event_dict:
        event_dict["correlation_id"] = cid
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Route structlog and the standard library (uvicorn, faststream, aio-pika) through one JSON renderer."""
    shared_processors: list = [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        # A line below the logger's level is dropped first, before it costs a time stamp and a dict.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.bind_contextvars(service=service)
    # FastStream logs every message at INFO; that costs throughput and says nothing our own logs don't.
    logging.getLogger("faststream").setLevel(logging.WARNING)
    logging.getLogger("mitwirkung.broker").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


# Metrics: one registry (the default), labelled by service so several services may share a process in tests.
OUTBOX_BACKLOG = Gauge("mitwirkung_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter("mitwirkung_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_FAILURES = Counter(
    "mitwirkung_outbox_publish_failures_total",
    "Outbox publishes that failed (broker down, unroutable)",
    ["service"],
)
MESSAGES_CONSUMED = Counter(
    "mitwirkung_messages_consumed_total", "Messages handled by consumers", ["consumer", "outcome"]
)
HTTP_REQUESTS = Counter(
    "mitwirkung_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "mitwirkung_http_request_seconds", "HTTP request latency", ["service", "method", "route"]
)
WORKER_HEALTHY = Gauge(
    "mitwirkung_worker_healthy", "1 while a background worker is doing its work", ["service", "worker"]
)
WORKER_LAST_SUCCESS = Gauge(
    "mitwirkung_worker_last_success_timestamp_seconds",
    "When a background worker last did its work successfully (Unix time)",
    ["service", "worker"],
)
MAIL_ATTEMPTS = Counter(
    "mitwirkung_mail_attempts_total", "Mail attempts, by the status they left their delivery in", ["status"]
)
MAIL_BOUNCES = Counter(
    "mitwirkung_mail_bounces_total",
    "Bounces by kind: permanent (the address is gone, incl. the relay refusing a recipient), rejected "
    "(5.7.x: the mail refused, not the address), temporary, unparseable, unknown_delivery, not_ours (an "
    "unknown or forged return path)",
    ["kind"],
)
WORKER_BACKLOG = Gauge(
    "mitwirkung_worker_backlog", "Work waiting for a background worker", ["service", "worker"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "mitwirkung_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest outbox row not yet published (0: none waits)",
    ["service"],
)
ERASURE_OLDEST_UNFINISHED_AGE = Gauge(
    "mitwirkung_erasure_oldest_unfinished_age_seconds",
    "Age of the oldest verified erasure request that not every service has answered yet (0: none)",
)


@dataclass
class WorkerState:
    healthy: bool = True
    last_success: float | None = None
    # Unhealthy since (Unix time) and the class of the last error ("ConnectionRefusedError"). The error's
    # message — host names, a relay's answer quoting a recipient — is logged, never shown here.
    since: float | None = None
    error_class: str | None = None
    backlog: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The public summary (``/readyz``): nothing in it identifies a host or a person."""
        return {
            "healthy": self.healthy,
            "since": _iso(self.since),
            "last_success": _iso(self.last_success),
            "error_class": self.error_class,
            "backlog": self.backlog,
        }


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).isoformat() if at else None


class WorkerHealth:
    """Each background worker of one process (relay, consumers, sender, jobs) reports here; ``/readyz``'s
    body and ``/metrics`` show the result — a summary without any error message (the log has those)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.workers: dict[str, WorkerState] = {}

    def _state(self, worker: str) -> WorkerState:
        state = self.workers.get(worker)
        if state is None:
            state = self.workers[worker] = WorkerState()
            WORKER_HEALTHY.labels(self.service, worker).set(1)
        return state

    def register(self, worker: str) -> None:
        self._state(worker)

    def ok(self, worker: str, backlog: int | None = None) -> None:
        state = self._state(worker)
        state.healthy, state.last_success, state.since, state.error_class = True, time.time(), None, None
        WORKER_HEALTHY.labels(self.service, worker).set(1)
        WORKER_LAST_SUCCESS.labels(self.service, worker).set(state.last_success)
        if backlog is not None:
            self.backlog(worker, backlog)

    def backlog(self, worker: str, backlog: int) -> None:
        self._state(worker).backlog = backlog
        WORKER_BACKLOG.labels(self.service, worker).set(backlog)

    def failed(self, worker: str, error: BaseException | str) -> None:
        """``error``: the exception, or a short description written in the code (never a value from
        outside, which belongs in the log)."""
        state = self._state(worker)
        error_class = error if isinstance(error, str) else type(error).__name__
        if state.healthy or state.error_class != error_class:
            # The detail goes to the log (once per change, not once per retry), never to /readyz.
            detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"[:500]
            get_logger(__name__).warning("worker unhealthy", worker=worker, error=detail)
        if state.healthy:
            state.since = time.time()
        state.healthy, state.error_class = False, error_class[:100]
        WORKER_HEALTHY.labels(self.service, worker).set(0)

    def report(self) -> dict[str, dict[str, Any]]:
        return {name: state.as_dict() for name, state in sorted(self.workers.items())}


def reraise_if_cancelled(error: BaseException) -> None:
    """Background loops catch ``Exception`` to survive outages. A cancellation that arrives inside a database
    call may surface as another exception (SQLAlchemy invalidates the connection and raises its own), and
    swallowing it would leave the loop running after ``stop()``: re-raise it as what it was."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from error


async def cancel_and_wait(task: asyncio.Task, patience: float = 2.0) -> None:
    """Cancel ``task`` and wait until it has ended. A cancellation can be swallowed inside a library (a
    database or broker call that turns it into another error, caught by a loop that survives errors):
    cancel again until the task ends, so that a stop can never hang."""
    rounds = 0
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience)
        rounds += 1
        if rounds == 2:
            get_logger(__name__).warning(
                "a task ignored its cancellation; cancelling again", task=task.get_name()
            )
    if not task.cancelled() and task.exception() is not None:
        get_logger(__name__).warning(
            "task ended with an error", task=task.get_name(), error=repr(task.exception())
        )
