"""RabbitMQ unreachable for a while, registrations streaming in: every POST is accepted, ``/readyz`` stays
200, and afterwards the events leave in the order they were made, each mailed once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import aio_pika
import asyncpg
import pytest

from services.notification.app import create_app as notification_app
from services.registration.app import create_app as registration_app
from shared.db import asyncpg_dsn
from shared.tokens import token_for
from shared.topology import EVENTS_EXCHANGE
from tests.conftest import registration_body, running
from tests.support.broker import dead_lettered
from tests.support.calendar import calendar_of
from tests.support.tcpproxy import TcpProxy
from tests.support.wait import eventually


@pytest.mark.parametrize(
    "outage", [pytest.param(6.0, id="6s"), pytest.param(30.0, id="30s", marks=pytest.mark.slow)]
)
async def test_a_broker_outage_keeps_intake_open_and_events_in_order(
    registration_settings, notification_settings, smtp, make_working_group, outage
):
    amqp = urlparse(registration_settings.amqp_url)
    proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
    await proxy.start()
    proxied = amqp._replace(netloc=f"{amqp.username}:{amqp.password}@127.0.0.1:{proxy.port}").geturl()
    settings = registration_settings.model_copy(
        update={
            "amqp_url": proxied,
            "rate_limit_per_minute": 0,
            "opt_in_mails_per_hour": 0,
            "broker_watch_interval": 1.0,
        }
    )
    registration = registration_app(settings)
    runtime = registration.state.runtime
    try:
        async with running(registration) as api, running(notification_app(notification_settings)):
            order_connection = await aio_pika.connect(registration_settings.amqp_url)
            order_channel = await order_connection.channel()
            order_queue = await order_channel.declare_queue(exclusive=True)
            events_exchange = await order_channel.get_exchange(EVENTS_EXCHANGE)
            for key in ("registration.confirmed", "registration.cancelled"):
                await order_queue.bind(events_exchange, routing_key=key)
            wg = await make_working_group(
                runtime, capacity=5, starts_at=datetime.now(UTC) + timedelta(days=30)
            )
            resident = registration_body(working_group_id=wg)
            created = await api.post("/v1/registrations", json=resident)
            assert created.status_code == 202
            token = token_for(settings.token_secret, uuid.UUID(created.json()["id"]))
            await smtp.wait_for(resident["email"], timeout=30)

            statuses: list[int] = []
            ready: list[int] = []
            streamed: list[str] = []
            stop = asyncio.Event()

            async def stream() -> None:
                while not stop.is_set():
                    body = registration_body()
                    statuses.append((await api.post("/v1/registrations", json=body)).status_code)
                    streamed.append(body["email"])
                    ready.append((await api.get("/readyz")).status_code)
                    await asyncio.sleep(0.05)

            streaming = asyncio.create_task(stream())
            await asyncio.sleep(0.5)
            await proxy.cut()
            cut_at = time.monotonic()
            await asyncio.sleep(min(1.0, outage / 4))
            confirmed = await api.post("/v1/registrations/confirm", json={"token": token})
            assert confirmed.json()["status"] == "confirmed"
            cancelled = await api.post("/v1/registrations/cancel", json={"token": token})
            assert cancelled.json()["status"] == "cancelled"
            during = await api.get("/readyz")
            assert during.status_code == 200
            assert during.json()["checks"]["broker"] is False
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - cut_at)))
            await proxy.start()
            outage_seconds = time.monotonic() - cut_at
            await asyncio.sleep(0.5)
            stop.set()
            await streaming

            assert statuses and set(statuses) == {202}
            assert set(ready) == {200}

            async def everyone_mailed() -> bool:
                return (
                    all(smtp.handler.to(email) for email in streamed)
                    and len(smtp.handler.to(resident["email"])) >= 3
                )

            await eventually(everyone_mailed, "a mail for every registration made", timeout=outage + 60)

            conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
            try:
                rows = await conn.fetch(
                    "SELECT seq, event_type, attempts, published_at FROM registration.outbox "
                    "WHERE payload->'recipient'->>'email' = ANY($1::text[]) ORDER BY seq",
                    [*streamed, resident["email"]],
                )
            finally:
                await conn.close()
            # A connection failure backed no row off, and the rows went out in the order they were made.
            assert all(r["published_at"] is not None for r in rows)
            assert [r["attempts"] for r in rows] == [0] * len(rows)
            published = [r["published_at"] for r in rows]
            assert published == sorted(published)
            # The order in which they reached the broker, as a queue bound beside the consumers' saw it
            # (consumers handle deliveries concurrently and must not rely on order; the relay keeps it).
            arrived = []
            while (message := await order_queue.get(fail=False, no_ack=True)) is not None:
                if json.loads(message.body)["registration_id"] == created.json()["id"]:
                    arrived.append(message.type)
            assert arrived == ["registration.confirmed", "registration.cancelled"]

            counts = {email: len(smtp.handler.to(email)) for email in streamed}
            assert set(counts.values()) == {1}
            assert len(smtp.handler.to(resident["email"])) == 3
            # The resident's calendar: the confirmation's entry, then its cancellation.
            entries = calendar_of(smtp.handler.to(resident["email"]))
            assert entries and {e.status for e in entries.values()} == {"CANCELLED"}
            dlq = await dead_lettered(registration_settings.amqp_url)
            assert sum(dlq.values()) == 0
            print(
                "broker outage:",
                {
                    "outage_s": round(outage_seconds, 1),
                    "posts_during_stream": len(statuses),
                    "posts_202": statuses.count(202),
                    "readyz_200": ready.count(200),
                    "events_in_outbox": len(rows),
                    "mails": sum(counts.values()) + 3,
                    "duplicates": sum(c - 1 for c in counts.values()),
                    "dlq": sum(dlq.values()),
                },
            )
            await order_connection.close()
    finally:
        await proxy.cut()
