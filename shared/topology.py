"""The whole RabbitMQ topology, declared from this one definition by every service at start, and again
on every new connection (the relay's, the runtime's broker watch): a broker that lost its definitions
(``rabbitmqctl reset``, a new node) is set up again without restarting anything.

    producer --(routing key = event type)--> mitwirkung.events (topic)
        --> <service>.<purpose>            quorum queue, x-delivery-limit, DLX = mitwirkung.dlx
              | handler failed, attempts left: the consumer republishes to mitwirkung.retry
              v
            <queue>.retry                  TTL queue; expired messages dead-letter back to <queue>
              | attempts exhausted (consumer rejects) or delivery limit hit (crash loop)
              v
            mitwirkung.dlx (direct, key = queue name) --> <queue>.dlq   (inspect, then replay)

Every service declares every queue, not only its own, so an event is never unroutable merely because
its consumer has not started yet. Declaring is idempotent; changing a queue's arguments is not (RabbitMQ
answers PRECONDITION_FAILED), so such a change needs a new queue name and a migration of its messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel

EVENTS_EXCHANGE = "mitwirkung.events"
RETRY_EXCHANGE = "mitwirkung.retry"
DEAD_LETTER_EXCHANGE = "mitwirkung.dlx"


@dataclass(frozen=True)
class ConsumerQueue:
    """One consumer's durable queue and the event types it is bound to."""

    name: str
    routing_keys: tuple[str, ...]

    @property
    def retry_queue(self) -> str:
        return f"{self.name}.retry"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"


NOTIFICATION_MAIL = ConsumerQueue(
    "notification.mail",
    (
        "registration.submitted",
        "registration.resubmitted",
        "registration.confirmed",
        "registration.waitlisted",
        "registration.promoted",
        "registration.cancelled",
        "registration.expired",
        "meeting.rescheduled",
        "meeting.cancelled",
        "meeting.reminder_due",
        "meeting.minutes_published",
        "proposal.submitted",
        "proposal.published",
        "proposal.rejected",
        "proposal.changes_requested",
        "proposal.marked_duplicate",
        "proposal.outcome_decided",
        "proposal.withdrawn",
        "privacy.erasure_request_submitted",
        "privacy.erasure_finished",
    ),
)
PROPOSALS_CATALOG = ConsumerQueue("proposals.catalog", ("working_group.published", "working_group.changed"))
# The proposals service keeps each meeting's attendance counts for open data (no personal data).
PROPOSALS_ATTENDANCE = ConsumerQueue("proposals.attendance", ("meeting.attendance_counted",))
PRIVACY_QUEUES: tuple[ConsumerQueue, ...] = tuple(
    ConsumerQueue(f"{service}.privacy", ("privacy.erasure_requested",))
    for service in ("registration", "notification", "proposals")
)


def privacy_queue(service: str) -> ConsumerQueue:
    """``<service>.privacy``: where a service hears ``privacy.erasure_requested``."""
    return next(q for q in PRIVACY_QUEUES if q.name == f"{service}.privacy")


# The registration service follows each erasure request until every service has answered.
REGISTRATION_ERASURE_PROGRESS = ConsumerQueue("registration.erasure_progress", ("privacy.erasure_completed",))

# The registration service marks a registration whose address bounced (the staff participant list).
REGISTRATION_MAIL_STATUS = ConsumerQueue("registration.mail_status", ("mail.bounced",))

QUEUES: tuple[ConsumerQueue, ...] = (
    NOTIFICATION_MAIL,
    PROPOSALS_CATALOG,
    PROPOSALS_ATTENDANCE,
    *PRIVACY_QUEUES,
    REGISTRATION_ERASURE_PROGRESS,
    REGISTRATION_MAIL_STATUS,
)


@dataclass(frozen=True)
class QueuePolicy:
    delivery_limit: int = 20
    retry_delay_ms: int = 5000

    @classmethod
    def from_settings(cls, settings: object) -> QueuePolicy:
        """Every service must declare the same arguments: they come from the shared settings."""
        return cls(
            delivery_limit=settings.queue_delivery_limit,  # type: ignore[attr-defined]
            retry_delay_ms=settings.consumer_retry_delay_ms,  # type: ignore[attr-defined]
        )


def _quorum(extra: dict) -> dict:
    return {"x-queue-type": "quorum", **extra}


async def declare_exchanges(channel: AbstractChannel) -> None:
    await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(RETRY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)


async def declare_consumer_queue(
    channel: AbstractChannel, queue: ConsumerQueue, policy: QueuePolicy = QueuePolicy()
) -> None:
    """Declare a consumer's queue, its retry queue and its dead-letter queue, and bind all three."""
    events = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    retry = await channel.get_exchange(RETRY_EXCHANGE, ensure=False)
    dlx = await channel.get_exchange(DEAD_LETTER_EXCHANGE, ensure=False)

    main = await channel.declare_queue(
        queue.name,
        durable=True,
        arguments=_quorum(
            {
                "x-delivery-limit": policy.delivery_limit,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": queue.name,
                # at-least-once dead-lettering (the default is at-most-once) requires reject-publish.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        ),
    )
    for key in queue.routing_keys:
        await main.bind(events, routing_key=key)

    retry_queue = await channel.declare_queue(
        queue.retry_queue,
        durable=True,
        arguments=_quorum(
            {
                "x-message-ttl": policy.retry_delay_ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue.name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        ),
    )
    await retry_queue.bind(retry, routing_key=queue.name)

    dlq = await channel.declare_queue(queue.dead_letter_queue, durable=True, arguments=_quorum({}))
    await dlq.bind(dlx, routing_key=queue.name)


async def declare_all(
    channel: AbstractChannel, policy: QueuePolicy = QueuePolicy(), queues: tuple[ConsumerQueue, ...] = QUEUES
) -> None:
    await declare_exchanges(channel)
    for queue in queues:
        await declare_consumer_queue(channel, queue, policy)


async def declare_topology(
    amqp_url: str,
    policy: QueuePolicy = QueuePolicy(),
    queues: tuple[ConsumerQueue, ...] = QUEUES,
) -> None:
    """Declare exchanges and all consumer queues on a short-lived connection of its own."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        await declare_all(await connection.channel(), policy, queues)
    finally:
        await connection.close()


async def queue_depths(
    connection: aio_pika.abc.AbstractConnection, queues: tuple[ConsumerQueue, ...] = QUEUES
) -> dict[str, int] | None:
    """Ready messages per queue (main and dead-letter queues), or None when an exchange or a queue of the
    topology is missing. Passive declarations: nothing is created."""
    channel = await connection.channel()
    try:
        for name in (EVENTS_EXCHANGE, RETRY_EXCHANGE, DEAD_LETTER_EXCHANGE):
            await channel.declare_exchange(name, passive=True)
        depths: dict[str, int] = {}
        for queue in queues:
            for name in (queue.name, queue.retry_queue, queue.dead_letter_queue):
                declared = await channel.declare_queue(name, passive=True)
                depths[name] = declared.declaration_result.message_count or 0
        return depths
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            await channel.close()
