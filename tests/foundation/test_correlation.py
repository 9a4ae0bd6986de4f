"""A correlation id travels from the HTTP request into the event's AMQP properties."""

from __future__ import annotations

import json

import aio_pika

from services.registration.app import create_app
from shared.topology import EVENTS_EXCHANGE, QueuePolicy, declare_topology
from tests.conftest import registration_body, running
from tests.support.wait import eventually


async def test_correlation_id_travels_from_request_to_event(registration_settings):
    await declare_topology(registration_settings.amqp_url, QueuePolicy.from_settings(registration_settings))
    connection = await aio_pika.connect(registration_settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(await channel.get_exchange(EVENTS_EXCHANGE), routing_key="registration.submitted")
        async with running(create_app(registration_settings)) as client:
            body = registration_body()
            response = await client.post(
                "/v1/registrations", json=body, headers={"X-Correlation-ID": "web-form-4711"}
            )
            assert response.status_code == 202
            assert response.headers["X-Correlation-ID"] == "web-form-4711"
            generated = await client.get("/healthz")
            assert len(generated.headers["X-Correlation-ID"]) == 36  # made up when none came
            unsafe = await client.get("/healthz", headers={"X-Correlation-ID": "bad\x01id"})
            assert unsafe.headers["X-Correlation-ID"] != "bad\x01id"

            async def our_event():
                message = await queue.get(no_ack=True, fail=False)
                if message and json.loads(message.body)["recipient"]["email"] == body["email"]:
                    return message
                return None

            message = await eventually(our_event, "the registration's event on the queue", timeout=20)
        assert message.correlation_id == "web-form-4711"
        assert message.type == "registration.submitted"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert message.message_id and message.timestamp is not None
    finally:
        await connection.close()
