"""The notification service split into an ingest process and a sender process (``NOTIFICATION_ROLE``),
against real Postgres, RabbitMQ and SMTP: each does only its part, and the sender is woken by the ingest
side's NOTIFY, not by its poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI

from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from shared.db import asyncpg_dsn
from tests.conftest import running, unique_email
from tests.notification.test_sending import deliveries_to, final_delivery, submitted
from tests.support.events import publish_event as publish
from tests.support.smtp import SmtpServer
from tests.support.wait import eventually

# Longer than any wait below: a mail that arrives was sent because the sender was woken, not polled.
POLL_NEVER = 600.0


def role(settings: NotificationSettings, name: str) -> NotificationSettings:
    return settings.model_copy(update={"role": name, "sender_poll_interval": POLL_NEVER})


@asynccontextmanager
async def sender_process(settings: NotificationSettings) -> AsyncIterator[FastAPI]:
    """A sender has no broker to wait for: its lifespan alone."""
    app = notification_app(role(settings, "sender"))
    async with app.router.lifespan_context(app):
        yield app


async def test_the_ingest_process_records_the_sender_process_sends(
    notification_settings: NotificationSettings, smtp: SmtpServer
) -> None:
    email, later = unique_email("split"), unique_email("split-later")
    async with running(ingest := notification_app(role(notification_settings, "ingest"))) as client:
        runtime = ingest.state.runtime
        assert runtime.workers == [] and runtime.consumers and runtime.relay is not None
        await publish(notification_settings.amqp_url, submitted(email))
        # Recorded, and nobody sends it: this process has no sender.
        await final_delivery(notification_settings, email, "pending")
        assert (await client.get("/readyz")).json()["checks"] == {"database": True, "broker": True}

        async with sender_process(notification_settings) as sender:
            own = sender.state.runtime
            assert own.consumers == [] and own.relay is None and own.workers == [sender.state.dispatcher]
            transport = httpx.ASGITransport(app=sender)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as sender_client:
                ready = await sender_client.get("/readyz")
            # Ready without a broker (it neither consumes nor publishes), and no broker worker reported.
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": True}
            assert "broker" not in ready.json()["workers"]
            # What was recorded before it started: its first pass.
            await smtp.wait_for(email)
            await eventually(lambda: _passes_at_least(sender, 1), "the sender to go idle")

            # Recorded later: the ingest side's NOTIFY wakes the idle sender.
            await publish(notification_settings.amqp_url, submitted(later))
            await smtp.wait_for(later, timeout=10)
            await final_delivery(notification_settings, later, "sent")

            # The sender's listening connection dies (a database restart, a killed backend): it listens
            # again, and the next wake-up still arrives.
            await _terminate_listeners(notification_settings)
            await eventually(lambda: _listening_again(notification_settings), "the sender to listen again")
            third = unique_email("split-after-loss")
            await publish(notification_settings.amqp_url, submitted(third))
            await smtp.wait_for(third, timeout=10)
    for address in (email, later, third):
        assert len(smtp.handler.to(address)) == 1
        assert [row["status"] for row in await deliveries_to(notification_settings, address)] == ["sent"]


async def _passes_at_least(app: FastAPI, count: int) -> bool:
    return bool(app.state.dispatcher.passes >= count)


LISTENERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND query LIKE 'LISTEN %notification_mail_due%' AND pid <> pg_backend_pid()"
)


async def _terminate_listeners(settings: NotificationSettings) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        pids = [row["pid"] for row in await conn.fetch(LISTENERS)]
        assert pids, "the sender should be listening"
        await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    finally:
        await conn.close()


async def _listening_again(settings: NotificationSettings) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await asyncio.sleep(0.1)
        return bool(await conn.fetch(LISTENERS))
    finally:
        await conn.close()
