"""Looking at (and breaking) the run's own RabbitMQ vhost."""

from __future__ import annotations

import contextlib

import aio_pika

from shared.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QUEUES, RETRY_EXCHANGE, ConsumerQueue


async def queue_depth(amqp_url: str, queue: str) -> int:
    """Ready messages in ``queue`` (0 if it does not exist)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


async def dead_lettered(amqp_url: str, queues: tuple[ConsumerQueue, ...] = QUEUES) -> dict[str, int]:
    return {q.dead_letter_queue: await queue_depth(amqp_url, q.dead_letter_queue) for q in queues}


async def forget_definitions(amqp_url: str, queues: tuple[ConsumerQueue, ...] = QUEUES) -> None:
    """What ``rabbitmqctl reset`` does to the run's vhost: every queue and exchange of the topology gone."""
    connection = await aio_pika.connect(amqp_url)
    try:
        for queue in queues:
            for name in (queue.name, queue.retry_queue, queue.dead_letter_queue):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.ChannelNotFoundEntity):
                    await channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    await channel.close()
        for name in (EVENTS_EXCHANGE, RETRY_EXCHANGE, DEAD_LETTER_EXCHANGE):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.ChannelNotFoundEntity):
                await channel.exchange_delete(name)
            with contextlib.suppress(Exception):
                await channel.close()
    finally:
        await connection.close()
