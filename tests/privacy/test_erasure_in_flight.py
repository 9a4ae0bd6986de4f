"""Erasure wins over events in flight (real Postgres, RabbitMQ and SMTP): an event for the address that
waits in the retry queue, or in the dead-letter queue and is replayed, while the address is erased, records
nothing and sends nothing afterwards; the last "all deleted" mail still goes, and is the last mail; an event
that occurs after the erasure (the person registers again) is mailed as ever."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.notification import service as notification_service
from services.notification.app import create_app as notification_app
from services.notification.models import deliveries, erased_addresses, inbox
from shared import events as ev
from shared.dlq import replay_dead_letters
from shared.topology import NOTIFICATION_MAIL, privacy_queue
from tests.conftest import running, unique_email
from tests.notification.test_sending import submitted
from tests.support.events import publish_to_queue
from tests.support.wait import eventually


async def test_events_held_in_the_retry_queue_and_the_dlq_send_nothing_after_the_erasure(
    infra, notification_settings, smtp, monkeypatch
):
    email, bystander = unique_email("In.Flight"), unique_email("bystander")
    # The consumer fails every event for the address while the gate is closed: its event cycles through
    # the retry queue (many attempts allowed) until the erasure is done.
    settings = notification_settings.model_copy(update={"consumer_max_attempts": 1000})
    gate = {"closed": True, "failures": 0}
    record_mails = notification_service.record_mails

    async def failing_for_the_address(conn, event, meta, *args):
        recipient = getattr(event, "recipient", None)
        if gate["closed"] and recipient is not None and recipient.email == email:
            gate["failures"] += 1
            raise RuntimeError("the consumer fails (test)")
        await record_mails(conn, event, meta, *args)

    monkeypatch.setattr(notification_service, "record_mails", failing_for_the_address)
    before = datetime.now(UTC) - timedelta(seconds=2)

    app = notification_app(settings)
    runtime = app.state.runtime
    async with running(app):
        amqp = settings.amqp_url
        in_retry = await publish_to_queue(amqp, NOTIFICATION_MAIL.name, submitted(email), before)
        in_dlq = await publish_to_queue(amqp, NOTIFICATION_MAIL.dead_letter_queue, submitted(email), before)
        await publish_to_queue(amqp, NOTIFICATION_MAIL.name, submitted(bystander), before)
        await smtp.wait_for(bystander)  # the others' mail goes on

        async def retried() -> bool:
            return gate["failures"] >= 2

        await eventually(retried, "the event to go through the retry queue", timeout=20)

        # --- the erasure, while one event waits in the retry queue and one in the DLQ ---------------
        request_id = uuid.uuid4()
        erasure = ev.PrivacyErasureRequested(request_id=request_id, email=email.upper(), language="en")
        erased_at = datetime.now(UTC)
        await publish_to_queue(amqp, privacy_queue("notification").name, erasure, erased_at)

        async def final_mail_held() -> bool:
            async with runtime.transaction() as conn:
                status = await conn.scalar(
                    select(deliveries.c.status).where(deliveries.c.event_id == str(request_id))
                )
            return status == "held"

        await eventually(final_mail_held, "the erasure to be done", timeout=20)
        gate["closed"] = False
        # Other tests of the run may have parked poison messages there too; ours is among those replayed
        # (its inbox entry below shows it was handled).
        assert await replay_dead_letters(amqp, NOTIFICATION_MAIL.name) >= 1

        async def both_handled() -> bool:
            async with runtime.transaction() as conn:
                handled = await conn.scalar(
                    select(func.count()).select_from(inbox).where(inbox.c.message_id.in_((in_retry, in_dlq)))
                )
            return handled == 2

        await eventually(both_handled, "the retried and the replayed event to be handled", timeout=20)
        async with runtime.transaction() as conn:
            rows = (
                await conn.execute(
                    select(deliveries.c.template, deliveries.c.status).where(
                        func.lower(deliveries.c.recipient_email) == email.lower()
                    )
                )
            ).all()
            remembered = await conn.scalar(select(func.count()).select_from(erased_addresses))
        assert [tuple(r) for r in rows] == [("privacy_erasure_finished", "held")]  # nothing recorded
        assert remembered >= 1
        await asyncio.sleep(1.0)
        assert smtp.handler.to(email) == []  # nothing sent

        # --- every service answered: the last mail goes, and nothing after it ------------------------
        await publish_to_queue(amqp, NOTIFICATION_MAIL.name, ev.PrivacyErasureFinished(request_id=request_id))
        last = await smtp.wait_for(email.upper())
        assert len(last) == 1 and "deleted" in last[0].message["Subject"]

        # --- the person registers again after the erasure: that mail goes as ever ------------------------
        await publish_to_queue(
            amqp, NOTIFICATION_MAIL.name, submitted(email), erased_at + timedelta(seconds=2)
        )
        again = await smtp.wait_for(email, count=2)
        assert "deleted" not in again[1].message["Subject"]


async def test_erased_address_hashes_go_after_48_hours(infra, notification_settings):
    app = notification_app(notification_settings)
    runtime = app.state.runtime
    old, recent = uuid.uuid4().hex, uuid.uuid4().hex
    now = datetime.now(UTC)
    async with running(app):
        async with runtime.transaction() as conn:
            await conn.execute(
                erased_addresses.insert(),
                [
                    {"address_hash": old, "erased_at": now, "recorded_at": now - timedelta(hours=49)},
                    {"address_hash": recent, "erased_at": now, "recorded_at": now - timedelta(hours=47)},
                ],
            )
        job = next(j for j in runtime.jobs if j.name == "forget-recipients")
        await job.run()
        async with runtime.transaction() as conn:
            left = set(
                (
                    await conn.execute(
                        select(erased_addresses.c.address_hash).where(
                            erased_addresses.c.address_hash.in_((old, recent))
                        )
                    )
                ).scalars()
            )
    assert left == {recent}
    assert notification_settings.erased_address_hours == 48


async def test_a_mail_claimed_when_the_address_is_erased_goes_before_the_last_mail(
    infra, notification_settings, smtp
):
    """A sender had claimed a mail to the address (it may be on the wire) when the erasure came: its row
    goes, and the last mail is not due before that claim's lease has ended."""
    email = unique_email("claimed")
    app = notification_app(notification_settings)
    runtime = app.state.runtime
    async with running(app):
        async with runtime.transaction() as conn:
            lease_until = await conn.scalar(select(func.now() + timedelta(seconds=3)))
            event_id = str(uuid.uuid4())
            await conn.execute(
                deliveries.insert().values(
                    id=uuid.uuid4(),
                    dedup_key=f"{event_id}:registration_submitted:{email}",
                    event_id=event_id,
                    event_type="registration.submitted",
                    template="registration_submitted",
                    language="de",
                    recipient_email=email,
                    recipient_name="",
                    message_id=f"<{event_id}@test>",
                    context={},
                    status="sending",
                    attempts=1,
                    lease_until=lease_until,
                )
            )
        request_id = uuid.uuid4()
        erasure = ev.PrivacyErasureRequested(request_id=request_id, email=email, language="en")
        async with runtime.transaction() as conn:
            await notification_service.erase_address(
                conn, erasure, "test", notification_settings.address_hash_secret
            )
        async with runtime.transaction() as conn:
            await notification_service.release_final_mail(
                conn, ev.PrivacyErasureFinished(request_id=request_id)
            )
            rows = (
                await conn.execute(
                    select(deliveries.c.template, deliveries.c.next_attempt_at).where(
                        deliveries.c.recipient_email == email
                    )
                )
            ).all()
        assert [(r.template, r.next_attempt_at) for r in rows] == [("privacy_erasure_finished", lease_until)]
        last = (await smtp.wait_for(email, timeout=15))[0]
        arrived = last.received_at + (time.time() - time.monotonic())  # received_at is monotonic
        assert arrived >= lease_until.timestamp() - 0.05
