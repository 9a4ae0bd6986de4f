"""Publishing an integration event straight to the exchange, as a producing service's relay would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import aio_pika

from shared.events import IntegrationEvent
from shared.topology import EVENTS_EXCHANGE


async def publish_event(amqp_url: str, event: IntegrationEvent, message_id: str | None = None) -> str:
    """Publish ``event`` persistently with its routing key and type; returns the message id used."""
    message_id = message_id or str(uuid.uuid4())
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=message_id,
                type=event.event_type,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event.event_type,
            mandatory=True,
        )
        return message_id
    finally:
        await connection.close()


async def publish_to_queue(
    amqp_url: str, queue: str, event: IntegrationEvent, occurred_at: datetime | None = None
) -> str:
    """Put ``event`` straight into ``queue`` (e.g. a dead-letter queue), as the producer's relay would have
    sent it at ``occurred_at`` (the AMQP timestamp); returns the message id used."""
    message_id = str(uuid.uuid4())
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=message_id,
                type=event.event_type,
                content_type="application/json",
                timestamp=occurred_at or datetime.now(UTC),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=queue,
            mandatory=True,
        )
        return message_id
    finally:
        await connection.close()
