"""Retention jobs against real Postgres with backdated rows: each removes what is due, nothing else,
once however many replicas run it at the same time, and records counts (log line and metric)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, text

from services.notification.app import build as notification_build
from services.notification.models import deliveries
from services.registration.app import build as registration_build
from services.registration.models import meetings, registrations, working_groups
from services.registration.service import hash_token

NOW = datetime.now(UTC)


def metric(service: str, job: str, kind: str) -> float:
    labels = {"service": service, "job": job, "kind": kind}
    return REGISTRY.get_sample_value("mitwirkung_retention_records_total", labels) or 0.0


async def run_as_two_replicas(runtime, job_name: str) -> None:
    job = next(j for j in runtime.jobs if j.name == job_name)
    await asyncio.gather(job.run(), job.run())


async def _group(session, last_meeting: datetime | None) -> str:
    wg = f"ret-{uuid.uuid4().hex[:8]}"
    await session.execute(insert(working_groups).values(id=wg, title="Retention", capacity=10))
    await session.execute(
        insert(meetings).values(
            [
                {"working_group_id": wg, "number": 1, "starts_at": NOW - timedelta(days=400)},
                {"working_group_id": wg, "number": 2, "starts_at": last_meeting},
            ]
        )
    )
    return wg


async def _registration(session, wg: str, status: str = "confirmed", cancelled_at: datetime | None = None):
    registration_id = uuid.uuid4()
    email = f"ret-{registration_id.hex[:10]}@example.org"
    await session.execute(
        insert(registrations).values(
            id=registration_id,
            working_group_id=wg,
            status=status,
            name="Retention Person",
            email=email,
            email_key=email,
            language="de",
            participant_type="resident",
            accessibility_needs="Rollstuhl",
            token_hash=hash_token(uuid.uuid4().hex),
            cancelled_at=cancelled_at,
        )
    )
    return registration_id


async def _personal(session, registration_id) -> tuple:
    row = (
        await session.execute(
            select(registrations.c.name, registrations.c.email, registrations.c.accessibility_needs).where(
                registrations.c.id == registration_id
            )
        )
    ).one()
    return tuple(row)


async def test_registrations_are_anonymised_after_the_last_meeting_and_cancelled_ones_after_30_days(
    registration_settings,
):
    runtime = registration_build(registration_settings)
    async with runtime.transaction() as session:
        old = await _group(session, NOW - timedelta(days=181))
        recent = await _group(session, NOW - timedelta(days=179))
        undated = await _group(session, None)
        due = [await _registration(session, old), await _registration(session, old, "waitlisted")]
        kept = [await _registration(session, recent), await _registration(session, undated)]
        cancelled_due = await _registration(session, recent, "cancelled", NOW - timedelta(days=31))
        cancelled_kept = await _registration(session, recent, "cancelled", NOW - timedelta(days=29))
        expected = await session.scalar(
            text(
                """
                SELECT count(*) FROM registration.registrations r
                WHERE (r.name IS NOT NULL OR r.email IS NOT NULL OR r.email_key IS NOT NULL
                       OR r.organization IS NOT NULL OR r.district IS NOT NULL
                       OR r.accessibility_needs IS NOT NULL OR r.interpretation_language IS NOT NULL)
                  AND NOT EXISTS (SELECT 1 FROM registration.meetings m
                                  WHERE m.working_group_id = r.working_group_id AND m.starts_at IS NULL)
                  AND (SELECT max(coalesce(m.ends_at, m.starts_at)) FROM registration.meetings m
                       WHERE m.working_group_id = r.working_group_id) < now() - interval '180 days'
                """
            )
        )
    try:
        before = metric("registration", "anonymise-after-last-meeting", "registrations")
        await run_as_two_replicas(runtime, "anonymise-after-last-meeting")
        # Counted once, although two replicas ran the job at the same moment.
        assert metric("registration", "anonymise-after-last-meeting", "registrations") - before == expected
        before = metric("registration", "forget-cancelled", "registrations")
        await run_as_two_replicas(runtime, "forget-cancelled")
        forgotten = metric("registration", "forget-cancelled", "registrations") - before
        assert forgotten >= 1

        async with runtime.transaction() as session:
            for registration_id in (*due, cancelled_due):
                assert await _personal(session, registration_id) == (None, None, None)
            for registration_id in (*kept, cancelled_kept):
                assert await _personal(session, registration_id) != (None, None, None)
            statuses = (
                await session.execute(select(registrations.c.status).where(registrations.c.id.in_(due)))
            ).scalars()
            assert sorted(statuses) == ["confirmed", "waitlisted"]  # the counts for statistics stay
    finally:
        await runtime.engine.dispose()


async def _delivery(session, status: str, age_days: float) -> uuid.UUID:
    delivery_id = uuid.uuid4()
    email = f"log-{delivery_id.hex[:10]}@example.org"
    await session.execute(
        insert(deliveries).values(
            id=delivery_id,
            dedup_key=f"{uuid.uuid4()}:registration_confirmed:{email}",
            event_id=str(uuid.uuid4()),
            event_type="registration.confirmed",
            template="registration_confirmed",
            language="de",
            recipient_email=email,
            recipient_name="Log Person",
            message_id=f"<{delivery_id.hex}@example.org>",
            context={"recipient": {"email": email, "name": "Log Person"}, "working_group": {"id": "x"}},
            status=status,
            created_at=NOW - timedelta(days=age_days),
        )
    )
    return delivery_id


async def test_delivery_log_recipients_go_after_60_days(notification_settings):
    runtime, _ = notification_build(notification_settings)
    async with runtime.transaction() as session:
        due = [await _delivery(session, "sent", 61), await _delivery(session, "failed", 61)]
        kept = [await _delivery(session, "sent", 59)]
        expected = await session.scalar(
            select(func.count())
            .select_from(deliveries)
            .where(deliveries.c.recipient_email.is_not(None))
            .where(deliveries.c.status.in_(("sent", "failed")))
            .where(deliveries.c.created_at < func.now() - timedelta(days=60))
        )
    try:
        before = metric("notification", "forget-recipients", "deliveries")
        await run_as_two_replicas(runtime, "forget-recipients")
        assert metric("notification", "forget-recipients", "deliveries") - before == expected

        async with runtime.transaction() as session:
            rows = {
                r.id: r
                for r in (
                    await session.execute(select(deliveries).where(deliveries.c.id.in_(due + kept)))
                ).all()
            }
        for delivery_id in due:
            row = rows[delivery_id]
            assert (row.recipient_email, row.recipient_name) == (None, None)
            assert "@" not in row.dedup_key and "recipient" not in row.context
            assert row.context["working_group"] == {"id": "x"}  # the facts of the mail stay
        assert rows[kept[0]].recipient_email is not None
    finally:
        await runtime.engine.dispose()
