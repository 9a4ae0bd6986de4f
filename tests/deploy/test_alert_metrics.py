"""The gauges the alert rules watch (deploy/prometheus/alerts.yml) that the code did not export before:
the age of the oldest unpublished outbox row and of the oldest unfinished erasure."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from prometheus_client import REGISTRY
from sqlalchemy import delete, func, insert, select, update

from services.registration import privacy
from services.registration.app import create_app as registration_app
from services.registration.models import erasure_requests, outbox
from shared.events import IntegrationEvent
from shared.outbox import add_event


class NobodyListensForAge(IntegrationEvent):
    event_type: ClassVar[str] = "test.nobody_listens_for_age"
    note: str


def _outbox_age() -> float:
    value = REGISTRY.get_sample_value(
        "mitwirkung_outbox_oldest_unpublished_age_seconds", {"service": "registration"}
    )
    assert value is not None
    return value


async def test_the_relay_exports_the_age_of_the_oldest_unpublished_row(registration_settings):
    app = registration_app(registration_settings.model_copy(update={"outbox_poll_interval": 3600}))
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runtime.broker_ready.wait(), 30)
        await runtime.relay.stop()  # drive the relay by hand
        async with runtime.transaction() as session:
            # Unroutable: it stays unpublished, as a row would while the broker is away.
            event_id = await add_event(session, outbox, NobodyListensForAge(note="waits"))
            await session.execute(
                update(outbox)
                .where(outbox.c.id == event_id)
                .values(created_at=datetime.now(UTC) - timedelta(hours=2))
            )
        try:
            with contextlib.suppress(RuntimeError):
                await runtime.relay.relay_once()
            assert 7200 <= _outbox_age() < 7300
        finally:
            async with runtime.transaction() as session:
                await session.execute(delete(outbox).where(outbox.c.id == event_id))
        with contextlib.suppress(RuntimeError):
            await runtime.relay.relay_once()
        assert _outbox_age() < 600


async def test_the_oldest_unfinished_erasure_is_measured(registration_settings):
    app = registration_app(registration_settings)
    runtime = app.state.runtime
    now = datetime.now(UTC)
    rows = [
        {"status": "erasing", "verified_at": now - timedelta(hours=25)},
        {"status": "erasing", "verified_at": now - timedelta(hours=1)},
        {"status": "completed", "verified_at": now - timedelta(days=9)},
        {"status": "pending_verification", "verified_at": None},
    ]
    ids = [uuid.uuid4() for _ in rows]
    async with runtime.transaction() as session:
        for request_id, row in zip(ids, rows, strict=True):
            await session.execute(
                insert(erasure_requests).values(
                    id=request_id,
                    email_hash=f"test-{request_id}",
                    language="de",
                    origin="admin",
                    created_at=now - timedelta(days=10),
                    **row,
                )
            )
    try:
        async with runtime.transaction() as session:
            age = await privacy.measure_unfinished_erasures(session, now)
        assert age == 25 * 3600
        assert REGISTRY.get_sample_value("mitwirkung_erasure_oldest_unfinished_age_seconds") == age
        async with runtime.transaction() as session:
            await session.execute(delete(erasure_requests).where(erasure_requests.c.id.in_(ids[:2])))
            # Other tests of the run may have left erasures under way, younger than these two.
            oldest = await session.scalar(
                select(func.min(erasure_requests.c.verified_at)).where(erasure_requests.c.status == "erasing")
            )
            expected = (now - oldest).total_seconds() if oldest else 0.0
            assert await privacy.measure_unfinished_erasures(session, now) == expected < 3600
        assert REGISTRY.get_sample_value("mitwirkung_erasure_oldest_unfinished_age_seconds") == expected
    finally:
        async with runtime.transaction() as session:
            await session.execute(delete(erasure_requests).where(erasure_requests.c.id.in_(ids)))
        await runtime.engine.dispose()
