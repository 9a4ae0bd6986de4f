"""What a bounce does, against real Postgres, RabbitMQ and SMTP: a permanent failure marks the delivery
``bounced``, suppresses the address (a keyed hash) and publishes ``mail.bounced``; a temporary one is only
recorded; a forged or unknown return path changes nothing; an unreadable mail is kept; the relay refusing a
recipient at RCPT counts the same; a suppressed address gets no further mail."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.notification import bounces, service
from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from services.notification.domain import address_hash, bounce_sender
from shared.db import asyncpg_dsn
from shared.events import PrivacyErasureRequested
from tests.conftest import running, unique_email
from tests.notification.test_sending import submitted
from tests.support.bounces import dsn, exchange_ndr, not_a_bounce, postfix_text_bounce
from tests.support.events import publish_event
from tests.support.smtp import ReceivedMail, SmtpServer
from tests.support.staff import auth
from tests.support.wait import eventually

BOUNCES = "bounces@mitwirkung.kaiserslautern.de"


@pytest.fixture
def settings(notification_settings: NotificationSettings) -> NotificationSettings:
    return notification_settings.model_copy(update={"bounce_address": BOUNCES})


@asynccontextmanager
async def database(settings: NotificationSettings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        yield conn
    finally:
        await conn.close()


async def delivery_of(settings: NotificationSettings, email: str) -> asyncpg.Record:
    async with database(settings) as conn:
        return await conn.fetchrow(
            "SELECT * FROM notification.deliveries WHERE recipient_email = $1 ORDER BY seq LIMIT 1", email
        )


async def bounced_events(settings: NotificationSettings, delivery_id: uuid.UUID) -> list[dict]:
    async with database(settings) as conn:
        rows = await conn.fetch(
            "SELECT payload, published_at FROM notification.outbox WHERE event_type = 'mail.bounced' "
            "AND payload->>'delivery_id' = $1",
            str(delivery_id),
        )
    return [{**json.loads(r["payload"]), "published": r["published_at"] is not None} for r in rows]


async def suppression(settings: NotificationSettings, email: str) -> asyncpg.Record | None:
    async with database(settings) as conn:
        return await conn.fetchrow(
            "SELECT * FROM notification.suppressions WHERE address_hash = $1",
            address_hash(settings.address_hash_secret, email),
        )


async def receive(app, raw: bytes, recipients: list[str] | None = None) -> str:
    settings = app.state.runtime.settings
    async with app.state.runtime.transaction() as conn:
        return await service.receive_bounce_mail(
            conn,
            raw,
            source="test",
            bounce_address=settings.bounce_address,
            address_hash_secret=settings.address_hash_secret,
            envelope_recipients=recipients,
        )


async def sent_mail(settings, smtp: SmtpServer, email: str) -> tuple[ReceivedMail, asyncpg.Record]:
    event = submitted(email)
    await publish_event(settings.amqp_url, event)
    [mail] = await smtp.wait_for(email)
    row = await eventually(lambda: _sent(settings, email), f"the delivery to {email} marked sent", timeout=10)
    return mail, row


async def _sent(settings, email: str) -> asyncpg.Record | None:
    row = await delivery_of(settings, email)
    return row if row is not None and row["status"] == "sent" else None


def test_bounces_are_read_standard_and_not() -> None:
    def read(raw: bytes) -> bounces.BounceReport:
        return bounces.read_bounce(bounces.parse(raw))

    permanent = read(dsn("b+x@a.example", "maria@example.org", "5.1.1"))
    assert (permanent.kind, permanent.status) == ("permanent", "5.1.1")
    assert "User unknown" in permanent.diagnostic
    delayed = read(dsn("b+x@a.example", "maria@example.org", "4.2.2", "smtp; 452 4.2.2 Mailbox full"))
    assert (delayed.kind, delayed.status, delayed.diagnostic) == (
        "temporary",
        "4.2.2",
        "452 4.2.2 Mailbox full",
    )
    postfix = read(postfix_text_bounce("b+x@a.example", "maria@example.org"))
    assert (postfix.kind, postfix.status) == ("permanent", "5.1.1")
    exchange = read(exchange_ndr("b+x@a.example", "maria@example.org"))
    assert (exchange.kind, exchange.status) == ("permanent", "5.0.0")
    assert read(not_a_bounce("b+x@a.example")).kind == "unparseable"
    assert read(b"\x00\xff\xfe not a mail at all").kind == "unparseable"


async def test_a_permanent_bounce_suppresses_the_address_and_publishes_mail_bounced(settings, smtp):
    email = unique_email("bounce")
    app = notification_app(settings)
    async with running(app):
        mail, row = await sent_mail(settings, smtp, email)
        assert await receive(app, dsn(mail.envelope_from, email, "5.1.1")) == "permanent"

        bounced = await delivery_of(settings, email)
        assert bounced["status"] == "bounced"
        assert "5.1.1" in bounced["last_error"] and "User unknown" in bounced["last_error"]
        entry = await suppression(settings, email)
        assert entry is not None and entry["source"] == "bounce"
        assert email not in json.dumps({k: str(v) for k, v in entry.items()})  # the list holds no address
        [event] = await eventually(
            lambda: _published(settings, row["id"]), "mail.bounced published", timeout=10
        )
        assert event["registration_id"] == json.loads(row["context"])["registration_id"]
        assert (event["template"], event["status"], event["synchronous"]) == (
            "registration_submitted",
            "5.1.1",
            False,
        )
        assert email not in json.dumps(event)

        # The same bounce again (a mailbox polled twice) changes nothing more.
        assert await receive(app, dsn(mail.envelope_from, email, "5.1.1")) == "permanent"
        assert len(await bounced_events(settings, row["id"])) == 1

        # Registering again answers as always; the mail is recorded, suppressed, and never sent.
        await publish_event(settings.amqp_url, submitted(email.upper()))
        later = await eventually(
            lambda: _status_of_second(settings, email), "the second mail recorded", timeout=10
        )
        assert later["status"] == "suppressed" and "suppression list" in later["last_error"]
        await eventually(lambda: _passes(app, 2), "two sender passes")
    assert len(smtp.handler.to(email)) == 1  # any letter case


async def _published(settings, delivery_id) -> list[dict]:
    events = await bounced_events(settings, delivery_id)
    return events if events and all(e["published"] for e in events) else []


async def _status_of_second(settings, email: str) -> asyncpg.Record | None:
    async with database(settings) as conn:
        rows = await conn.fetch(
            "SELECT * FROM notification.deliveries WHERE lower(recipient_email) = lower($1) ORDER BY seq",
            email,
        )
    return rows[1] if len(rows) > 1 else None


async def _passes(app, more: int) -> bool:
    dispatcher = app.state.dispatcher
    start = getattr(app.state, "_passes_start", None)
    if start is None:
        app.state._passes_start = dispatcher.passes
        return False
    return dispatcher.passes >= start + more


async def test_a_forged_or_unknown_return_path_changes_nothing(settings, smtp):
    email = unique_email("forged")
    app = notification_app(settings)
    async with running(app):
        mail, row = await sent_mail(settings, smtp, email)
        signed = mail.envelope_from
        forged = signed[: signed.index("@") - 1] + ("a" if signed[signed.index("@") - 1] != "a" else "b")
        forged += signed[signed.index("@") :]
        another_key = bounce_sender(BOUNCES, row["id"], "x" * 40)
        for return_path in (forged, another_key, BOUNCES, "someone@example.org"):
            assert await receive(app, dsn(return_path, email), [return_path]) == "not_ours"
        # A valid return path of a delivery no longer recorded.
        gone = bounce_sender(BOUNCES, uuid.uuid4(), settings.address_hash_secret)
        assert await receive(app, dsn(gone, email), [gone]) == "unknown_delivery"

    assert (await delivery_of(settings, email))["status"] == "sent"
    assert await suppression(settings, email) is None
    assert await bounced_events(settings, row["id"]) == []


async def test_a_temporary_bounce_is_recorded_and_nothing_else(settings, smtp):
    email = unique_email("delayed")
    app = notification_app(settings)
    async with running(app):
        mail, row = await sent_mail(settings, smtp, email)
        raw = dsn(mail.envelope_from, email, "4.2.2", "smtp; 452 4.2.2 Mailbox full")
        assert await receive(app, raw) == "temporary"
    after = await delivery_of(settings, email)
    assert after["status"] == "sent" and "4.2.2" in after["last_error"]
    assert await suppression(settings, email) is None
    assert await bounced_events(settings, row["id"]) == []


async def test_an_unreadable_mail_is_kept_for_staff(settings, smtp):
    email = unique_email("unreadable")
    app = notification_app(settings)
    async with running(app):
        mail, row = await sent_mail(settings, smtp, email)
        raw = (
            not_a_bounce(mail.envelope_from)
            + b"\nhttp://forms.test/v1/registrations/confirm?token=T0ken_-x\n"
        )
        assert await receive(app, raw) == "unparseable"
    async with database(settings) as conn:
        kept = await conn.fetchrow(
            "SELECT * FROM notification.bounce_mails WHERE delivery_id = $1", row["id"]
        )
    assert kept["outcome"] == "unparseable" and kept["received_at"]
    # Kept as received, except that no working link stays at rest.
    assert bytes(kept["raw"]) == raw.replace(b"token=T0ken_-x", b"token=(removed)")
    assert (await delivery_of(settings, email))["status"] == "sent"
    assert await suppression(settings, email) is None

    # Staff read it (audited); after the retention period its bytes go.
    async with running(notification_app(settings)) as client:
        answer = await client.get(
            "/v1/bounce-mails", params={"outcome": "unparseable"}, headers=auth(settings, "staff")
        )
        assert answer.status_code == 200
        [shown] = [m for m in answer.json() if m["delivery_id"] == str(row["id"])]
        assert "Abwesenheit" in shown["text"] and "token=(removed)" in shown["text"]
        assert (
            await client.get("/v1/bounce-mails", params={"outcome": "x"}, headers=auth(settings, "staff"))
        ).status_code == 422
    later = datetime.now(UTC) + timedelta(days=settings.recipient_retention_days + 1)
    async with app.state.runtime.transaction() as conn:
        await service.forget_bounce_mail_bytes(conn, settings, later)
    async with database(settings) as conn:
        kept = await conn.fetchrow(
            "SELECT * FROM notification.bounce_mails WHERE delivery_id = $1", row["id"]
        )
    assert kept["raw"] is None and kept["outcome"] == "unparseable"


async def test_the_relay_refusing_a_recipient_counts_as_a_bounce(settings, smtp):
    email = unique_email("refused")
    smtp.handler.refuse_rcpt.add(email.lower())
    app = notification_app(settings)
    async with running(app):
        await publish_event(settings.amqp_url, submitted(email))
        row = await eventually(lambda: _bounced(settings, email), "the delivery bounced", timeout=10)
        assert "550 5.1.1" in row["last_error"]
        [event] = await eventually(lambda: _published(settings, row["id"]), "mail.bounced published")
        assert (event["status"], event["synchronous"]) == ("5.1.1", True)
        entry = await suppression(settings, email)
        assert entry is not None and entry["source"] == "rcpt" and email not in entry["reason"]
    assert smtp.handler.to(email) == []


async def _bounced(settings, email: str) -> asyncpg.Record | None:
    row = await delivery_of(settings, email)
    return row if row is not None and row["status"] == "bounced" else None


async def test_erasure_takes_the_suppression_and_kept_bounce_mails_of_the_address(settings, smtp):
    email = unique_email("erased-bounce")
    smtp.handler.refuse_rcpt.add(email)
    app = notification_app(settings)
    async with running(app):
        await publish_event(settings.amqp_url, submitted(email))
        row = await eventually(lambda: _bounced(settings, email), "the delivery bounced")
        tagged = bounce_sender(BOUNCES, row["id"], settings.address_hash_secret)
        unreadable = not_a_bounce(tagged).replace(b"Subject: Abwesenheit", f"Subject: {email}".encode())
        assert await receive(app, unreadable) == "unparseable"
        neighbour = not_a_bounce(tagged).replace(b"Subject: Abwesenheit", b"Subject: x" + email.encode())
        assert await receive(app, neighbour) == "unparseable"
        assert await suppression(settings, email) is not None

        await publish_event(
            settings.amqp_url, PrivacyErasureRequested(request_id=uuid.uuid4(), email=email.upper())
        )

        async def erased() -> bool:
            return await suppression(settings, email) is None

        await eventually(erased, "the suppression erased")
    async with database(settings) as conn:
        kept = await conn.fetch("SELECT raw FROM notification.bounce_mails WHERE delivery_id = $1", row["id"])
    # Exactly the address: a mail that only contains it within a longer word stays.
    assert [bytes(k["raw"]) for k in kept if k["raw"] is not None] == [neighbour]


async def test_a_refusal_of_the_mail_not_the_address_suppresses_nobody(settings, smtp):
    """5.7.x is the receiving system refusing this mail (spam policy, a blocked relay): the delivery shows
    it, the address stays; a relay refusing a recipient without saying the address is gone ("Relaying
    denied": a misconfigured relay) leaves the mail failed and suppresses nobody."""
    email = unique_email("policy")
    app = notification_app(settings)
    async with running(app):
        mail, row = await sent_mail(settings, smtp, email)
        raw = dsn(mail.envelope_from, email, "5.7.1", "smtp; 554 5.7.1 Message rejected as spam")
        assert await receive(app, raw) == "rejected"
        bounced = await _bounced(settings, email)
        assert (
            bounced is not None
            and "5.7.1" in bounced["last_error"]
            and "not suppressed" in bounced["last_error"]
        )

        relayless = unique_email("relaying-denied")
        smtp.handler.refuse_rcpt.add(relayless)
        smtp.handler.rcpt_refusal = "554 5.7.1 <{address}>: Relay access denied"
        await publish_event(settings.amqp_url, submitted(relayless))

        async def failed() -> asyncpg.Record | None:
            found = await delivery_of(settings, relayless)
            return found if found is not None and found["status"] == "failed" else None

        assert "Relay access denied" in (await eventually(failed, "the mail failed"))["last_error"]
    for address in (email, relayless):
        assert await suppression(settings, address) is None
    assert await bounced_events(settings, row["id"]) == []
