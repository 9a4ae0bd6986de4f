"""Operator tools for dead-letter queues: look at what is parked, and put it back."""

from __future__ import annotations

import aio_pika

from shared.inbox import ATTEMPT_HEADER, header_int


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def list_dead_letters(amqp_url: str, queue: str, limit: int = 100) -> list[str]:
    """Peek: every message is read and returned to the DLQ unchanged."""
    connection = await aio_pika.connect(amqp_url)
    lines: list[str] = []
    try:
        channel = await connection.channel()
        dlq = await channel.declare_queue(f"{queue}.dlq", passive=True)
        held = []
        for _ in range(limit):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
            deaths = (message.headers or {}).get("x-death")
            first = deaths[0] if isinstance(deaths, list) and deaths else None
            reason = _text(first.get("reason")) if isinstance(first, dict) else "?"
            lines.append(
                f"{message.message_id}\t{message.type}\tcorrelation={_text(message.correlation_id)}\t"
                f"reason={reason}\t"
                f"{bytes(message.body[:200]).decode(errors='replace')}"
            )
        for message in held:
            await message.nack(requeue=True)
    finally:
        await connection.close()
    return lines


async def replay_dead_letters(amqp_url: str, queue: str, limit: int = 1000) -> int:
    """Move up to ``limit`` messages from ``queue.dlq`` back to ``queue``, with a fresh attempt count.

    Each message is republished (persistent, confirmed) before it is acked in the DLQ: a crash in between
    leaves a copy in both, and the consumer's inbox drops the second.
    """
    connection = await aio_pika.connect(amqp_url)
    moved = 0
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.declare_queue(queue, passive=True)
        dlq = await channel.declare_queue(f"{queue}.dlq", passive=True)
        for _ in range(limit):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = {
                k: v for k, v in (message.headers or {}).items() if k not in ("x-death", ATTEMPT_HEADER)
            }
            headers["x-replayed"] = header_int(message.headers, "x-replayed") + 1
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body=message.body,
                    headers=headers,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type=message.type,
                    timestamp=message.timestamp,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue,
                mandatory=True,
            )
            await message.ack()
            moved += 1
    finally:
        await connection.close()
    return moved
