"""The backbone's promises, against real Postgres, RabbitMQ and SMTP: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from typing import ClassVar
from urllib.parse import urlparse

import aio_pika
import asyncpg
import pytest
from sqlalchemy import func, select, text

from services.notification.app import create_app as notification_app
from services.notification.models import deliveries
from services.registration import service as registration_service
from services.registration.app import create_app as registration_app
from services.registration.models import inbox as registration_inbox
from services.registration.models import outbox, registrations
from services.registration.schemas import RegistrationRequest
from shared.db import asyncpg_dsn
from shared.events import IntegrationEvent, ProposalSubmitted, Recipient, WorkingGroupInfo
from shared.inbox import EventConsumer
from shared.observability import MESSAGES_CONSUMED
from shared.outbox import add_event
from shared.runtime import build_runtime
from shared.topology import ConsumerQueue
from tests.conftest import registration_body, running
from tests.support.events import publish_event
from tests.support.mail import processing_ended
from tests.support.tcpproxy import TcpProxy
from tests.support.wait import eventually


async def _count(session, table, *where) -> int:
    return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def test_domain_row_and_outbox_row_commit_together_or_not_at_all(registration_settings):
    app = registration_app(registration_settings)
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        failing = RegistrationRequest(**registration_body())
        with pytest.raises(RuntimeError, match="after both inserts"):
            async with runtime.transaction() as session:
                await registration_service.submit_registration(
                    session, registration_settings, runtime.catalog, failing
                )
                assert await _count(session, registrations, registrations.c.email == failing.email) == 1
                raise RuntimeError("crash after both inserts, before commit")
        ok = RegistrationRequest(**registration_body())
        async with runtime.transaction() as session:
            registration_id = await registration_service.submit_registration(
                session, registration_settings, runtime.catalog, ok
            )
        async with runtime.transaction() as session:
            assert await _count(session, registrations, registrations.c.email == failing.email) == 0
            assert (
                await _count(session, outbox, outbox.c.payload["recipient"]["email"].astext == failing.email)
                == 0
            )
            assert await _count(session, registrations, registrations.c.id == registration_id) == 1
            assert (
                await _count(
                    session, outbox, outbox.c.payload["registration_id"].astext == str(registration_id)
                )
                == 1
            )


async def test_registrations_are_accepted_while_the_broker_is_unreachable(
    registration_settings, notification_settings, smtp
):
    amqp = urlparse(registration_settings.amqp_url)
    proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
    proxied = amqp._replace(netloc=f"{amqp.username}:{amqp.password}@127.0.0.1:{proxy.port}").geturl()
    settings = registration_settings.model_copy(update={"amqp_url": proxied})

    app = registration_app(settings)
    async with app.router.lifespan_context(app), running(notification_app(notification_settings)):
        import httpx

        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        # 1. The broker has never been reachable since the service started.
        first = registration_body()
        assert (await client.post("/v1/registrations", json=first)).status_code == 202
        await asyncio.sleep(1.0)
        assert smtp.handler.to(first["email"]) == []
        await proxy.start()
        await smtp.wait_for(first["email"], timeout=40)

        # 2. The connection drops while running; requests are still accepted, events wait in the outbox.
        await proxy.cut()
        second = registration_body()
        assert (await client.post("/v1/registrations", json=second)).status_code == 202
        await asyncio.sleep(1.5)
        assert smtp.handler.to(second["email"]) == []
        async with app.state.runtime.transaction() as session:
            unpublished = await _count(
                session,
                outbox,
                outbox.c.published_at.is_(None),
                outbox.c.payload["recipient"]["email"].astext == second["email"],
            )
        assert unpublished == 1
        await proxy.start()
        await smtp.wait_for(second["email"], timeout=60)
        await asyncio.sleep(1.0)
        assert len(smtp.handler.to(first["email"])) == 1
        assert len(smtp.handler.to(second["email"])) == 1
        await client.aclose()
    await proxy.cut()


async def test_relay_dying_between_publish_and_mark_leads_to_one_mail(
    registration_settings, notification_settings, smtp
):
    reg = registration_app(registration_settings.model_copy(update={"outbox_poll_interval": 3600}))
    runtime = reg.state.runtime
    async with running(reg) as client, running(notification := notification_app(notification_settings)):
        relay = runtime.relay
        await relay.stop()  # drive the relay by hand
        duplicates = MESSAGES_CONSUMED.labels("notification.mail", "duplicate")
        duplicates_before = duplicates._value.get()
        body = registration_body()
        assert (await client.post("/v1/registrations", json=body)).status_code == 202

        original = relay._mark_published

        async def crash(*args, **kwargs):
            raise ConnectionResetError("relay process killed after publishing")

        relay._mark_published = crash
        with pytest.raises(ConnectionResetError):
            await relay.relay_once()
        relay._mark_published = original
        async with runtime.transaction() as session:
            still_unpublished = await _count(
                session,
                outbox,
                outbox.c.published_at.is_(None),
                outbox.c.payload["recipient"]["email"].astext == body["email"],
            )
        assert still_unpublished == 1  # the mark rolled back: the relay will publish it again
        await smtp.wait_for(body["email"])
        assert await relay.relay_once() >= 1  # the second publish of the same event id

        async def redelivery_recognised() -> bool:
            return duplicates._value.get() >= duplicates_before + 1

        # The inbox recognised the redelivery (the delivery log's unique key is a second guard behind it).
        await eventually(redelivery_recognised, "the inbox to recognise the redelivery")
        await processing_ended(notification)
        assert len(smtp.handler.to(body["email"])) == 1
        assert duplicates._value.get() == duplicates_before + 1
    # One delivery row, one mail: the redelivery was recognised by the inbox.
    conn = await asyncpg.connect(asyncpg_dsn(notification_settings.database_url))
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM notification.deliveries WHERE recipient_email = $1", body["email"]
        )
        assert rows == 1
    finally:
        await conn.close()


POISON_QUEUE = ConsumerQueue("test.poison", ("proposal.submitted",))


def _proposal(title: str) -> ProposalSubmitted:
    return ProposalSubmitted(
        proposal_id=uuid.uuid4(),
        title=title,
        working_group=WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung"),
        author=Recipient(email="x@example.org", name="X"),
    )


async def _queue_depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


# batch_size 16: the poison message shares a batch (one transaction) with good ones; the batch fails and is
# rolled back, and each message is then handled on its own: the good ones are applied once, the poison one
# is parked.
@pytest.mark.parametrize("batch_size", [1, 16])
async def test_a_failing_message_is_dead_lettered_others_flow_and_replay_brings_it_back(
    registration_settings, batch_size
):
    attempts: dict[str, int] = {}
    handled: list[str] = []
    broken = {"on": True}
    release = asyncio.Event()

    async def handler(session, event, meta) -> None:
        attempts[event.title] = attempts.get(event.title, 0) + 1
        if event.title == "good-0":
            await asyncio.wait_for(release.wait(), 30)
        if event.title == "POISON" and broken["on"]:
            raise ValueError("this handler cannot cope with POISON")
        handled.append(event.title)

    runtime = build_runtime(registration_settings, outbox=None)
    runtime.extra_queues = (POISON_QUEUE,)
    consumer = EventConsumer(
        queue=POISON_QUEUE,
        handlers={"proposal.submitted": handler},
        inbox=registration_inbox,
        session_factory=runtime.session_factory,
        max_attempts=3,
        batch_size=batch_size,
    )
    consumer.subscribe(runtime.broker)
    await runtime.start()
    try:
        await asyncio.wait_for(runtime.broker_ready.wait(), 30)
        amqp = registration_settings.amqp_url
        # good-0 is held in its handler while the rest arrive: they wait together, as one batch.
        await publish_event(amqp, _proposal("good-0"))
        await publish_event(amqp, _proposal("POISON"))
        for i in range(1, 5):
            await publish_event(amqp, _proposal(f"good-{i}"))
        release.set()

        async def poison_parked_others_handled() -> bool:
            return await _queue_depth(amqp, POISON_QUEUE.dead_letter_queue) >= 1 and len(handled) >= 5

        await eventually(poison_parked_others_handled, "the poison message parked, the others handled", 30)
        assert sorted(handled) == [f"good-{i}" for i in range(5)]  # the others kept flowing
        # The configured number of attempts, with delays between. A batch's failed try is not counted: it
        # is the reason the message is then tried on its own.
        assert attempts["POISON"] == (3 if batch_size == 1 else 4)
        assert await _queue_depth(amqp, POISON_QUEUE.dead_letter_queue) == 1

        # The operator fixes the cause, then replays with the documented command.
        broken["on"] = False
        listing = subprocess.run(
            [sys.executable, "-m", "shared.cli", "dlq", "list", POISON_QUEUE.name, "--amqp-url", amqp],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ,
        )
        assert listing.returncode == 0, listing.stderr
        assert "proposal.submitted" in listing.stdout and "POISON" in listing.stdout
        replay = subprocess.run(
            [sys.executable, "-m", "shared.cli", "dlq", "replay", POISON_QUEUE.name, "--amqp-url", amqp],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ,
        )
        assert replay.returncode == 0, replay.stderr
        assert "replayed 1 message" in replay.stdout

        async def replayed() -> bool:
            return "POISON" in handled

        await eventually(replayed, "the replayed message to be handled", 20)
        assert await _queue_depth(amqp, POISON_QUEUE.dead_letter_queue) == 0
    finally:
        await runtime.stop()


class NobodyListens(IntegrationEvent):
    event_type: ClassVar[str] = "test.nobody_listens"
    note: str


async def test_an_unroutable_publish_is_an_error_and_the_row_stays_unpublished(registration_settings):
    app = registration_app(registration_settings.model_copy(update={"outbox_poll_interval": 3600}))
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runtime.broker_ready.wait(), 30)
        await runtime.relay.stop()
        async with runtime.transaction() as session:
            event_id = await add_event(session, outbox, NobodyListens(note="no queue is bound to this key"))
        # The pass fails outright if this row was all it had; other rows (the catalog seeded at start)
        # may go out in the same pass.
        with contextlib.suppress(RuntimeError):
            await runtime.relay.relay_once()
        async with runtime.transaction() as session:
            row = (await session.execute(select(outbox).where(outbox.c.id == event_id))).one()
            assert row.published_at is None
            assert row.attempts == 1
            assert "DeliveryError" in (row.last_error or "") or "NO_ROUTE" in (row.last_error or "")
            assert row.next_attempt_at > row.created_at  # it waits before its next try
            routable = await add_event(session, outbox, _proposal("behind the stuck one"))
        # The stuck row, though first in line, does not hold up the one behind it.
        assert await runtime.relay.relay_once() == 1
        async with runtime.transaction() as session:
            assert (
                await session.execute(select(outbox.c.published_at).where(outbox.c.id == routable))
            ).scalar()
            # Keep later tests' relays from retrying it forever.
            await session.execute(outbox.delete().where(outbox.c.id == event_id))


async def test_a_whole_relay_pass_fits_the_connections_write_queue(registration_settings):
    """aiormq hands outgoing frames to its writer task through a bounded queue; a publish beyond its size
    waits for the event loop's next turn. Under full intake that held the relay to about 500 events/s
    while 1,200/s came in, and its backlog grew for as long as the load lasted."""
    app = registration_app(registration_settings.model_copy(update={"outbox_poll_interval": 3600}))
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runtime.broker_ready.wait(), 30)
        channel = await runtime.relay._publishing_channel()
        assert (
            channel.write_queue.maxsize >= runtime.relay.batch_size == registration_settings.outbox_batch_size
        )


async def test_a_service_role_cannot_read_another_services_schema(
    registration_settings, notification_settings
):
    conn = await asyncpg.connect(asyncpg_dsn(registration_settings.database_url))
    try:
        assert await conn.fetchval("SELECT count(*) >= 0 FROM registration.registrations")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM notification.deliveries LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM proposals.districts LIMIT 1")
    finally:
        await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(notification_settings.database_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM registration.registrations LIMIT 1")
    finally:
        await conn.close()
    _ = deliveries


async def test_housekeeping_deletes_old_published_events_but_never_unpublished_ones(registration_settings):
    app = registration_app(registration_settings.model_copy(update={"outbox_poll_interval": 3600}))
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(runtime.broker_ready.wait(), 30)
        await runtime.relay.stop()
        ids = {}
        async with runtime.transaction() as session:
            for name in ("old_published", "new_published", "old_unpublished"):
                ids[name] = await add_event(session, outbox, _proposal(name))
            await session.execute(
                outbox.update()
                .where(outbox.c.id.in_([ids["old_published"], ids["old_unpublished"]]))
                .values(created_at=func.now() - text("interval '10 days'"))
            )
            await session.execute(
                outbox.update()
                .where(outbox.c.id == ids["old_published"])
                .values(published_at=func.now() - text("interval '10 days'"))
            )
            await session.execute(
                outbox.update().where(outbox.c.id == ids["new_published"]).values(published_at=func.now())
            )
        await runtime.housekeeping()
        async with runtime.transaction() as session:
            left = set(
                (await session.execute(select(outbox.c.id).where(outbox.c.id.in_(ids.values())))).scalars()
            )
            await session.execute(outbox.delete().where(outbox.c.id.in_(ids.values())))
        assert left == {ids["new_published"], ids["old_unpublished"]}


async def test_a_batch_applies_each_message_once_even_when_it_arrives_twice(registration_settings):
    """Two copies of one message (a redelivery) waiting in the same batch, next to one applied before:
    each is applied once, in the order it arrived, in one transaction."""
    handled: list[str] = []
    release = asyncio.Event()

    async def handler(session, event, meta) -> None:
        if event.title == "first":
            await asyncio.wait_for(release.wait(), 30)
        handled.append(event.title)

    queue = ConsumerQueue("test.batch", ("proposal.submitted",))
    runtime = build_runtime(registration_settings, outbox=None)
    runtime.extra_queues = (queue,)
    consumer = EventConsumer(
        queue=queue,
        handlers={"proposal.submitted": handler},
        inbox=registration_inbox,
        session_factory=runtime.session_factory,
        batch_size=16,
    )
    consumer.subscribe(runtime.broker)
    await runtime.start()
    duplicates = MESSAGES_CONSUMED.labels(queue.name, "duplicate")
    before = duplicates._value.get()
    try:
        await asyncio.wait_for(runtime.broker_ready.wait(), 30)
        amqp = registration_settings.amqp_url
        first_id = await publish_event(amqp, _proposal("first"))  # held while the others arrive
        twice = str(uuid.uuid4())
        await publish_event(amqp, _proposal("twice"), message_id=twice)
        await publish_event(amqp, _proposal("after"))
        await publish_event(amqp, _proposal("twice"), message_id=twice)
        await publish_event(amqp, _proposal("first"), message_id=first_id)  # applied before
        release.set()

        async def all_settled() -> bool:
            return duplicates._value.get() >= before + 2

        await eventually(all_settled, "the two copies recognised", 20)
        assert handled == ["first", "twice", "after"]
        assert await _queue_depth(amqp, queue.name) == 0
    finally:
        await runtime.stop()
