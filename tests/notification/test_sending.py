"""Sending mail, against real Postgres, RabbitMQ and SMTP: every relay answer ends in the right status,
and no event's mail reaches anyone twice, except in the one documented window."""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import aiosmtplib
import asyncpg
import pytest
from aiosmtpd.controller import Controller

from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from services.notification.dispatcher import Dispatcher
from services.notification.handlers import make_mail_handler
from services.notification.models import SCHEMA
from services.notification.rendering import TemplateRenderer
from services.notification.smtp import RateLimiter, SmtpPool
from shared.db import asyncpg_dsn, create_engine, create_session_factory, deferred_writes
from shared.events import (
    MeetingInfo,
    Recipient,
    RegistrationSubmitted,
    SelfServiceLinks,
    WorkingGroupInfo,
)
from shared.inbox import EventMeta
from shared.observability import MESSAGES_CONSUMED
from tests.conftest import running, unique_email
from tests.support.events import publish_event as publish
from tests.support.mail import HEADERS_WE_WRITE, processing_ended
from tests.support.smtp import RecordingHandler, SmtpServer, free_port
from tests.support.wait import eventually

BERLIN = ZoneInfo("Europe/Berlin")


def submitted(
    email: str, name: str = "Ayşe Yılmaz", title: str = "Sprachförderung", proven: bool = False
) -> RegistrationSubmitted:
    return RegistrationSubmitted(
        registration_id=uuid.uuid4(),
        recipient=Recipient(email=email, name=name, language="de", address_proven=proven),
        working_group=WorkingGroupInfo(id="sprachfoerderung", title=title),
        meetings=[
            MeetingInfo(
                number=1,
                starts_at=datetime(2019, 3, 6, 18, tzinfo=BERLIN),
                venue="Berufsbildende Schule I (blauer Salon)",
                address="Kaiserslautern",
            ),
            MeetingInfo(number=2),
        ],
        links=SelfServiceLinks(confirm_url="http://forms.test/v1/registrations/confirm?token=T"),
    )


async def deliveries_to(settings: NotificationSettings, email: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        return await conn.fetch(
            "SELECT * FROM notification.deliveries WHERE recipient_email = $1 ORDER BY created_at", email
        )
    finally:
        await conn.close()


async def final_delivery(settings: NotificationSettings, email: str, status: str) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        rows = await deliveries_to(settings, email)
        return rows[0] if len(rows) == 1 and rows[0]["status"] == status else None

    return await eventually(check, f"the delivery to {email} to be {status}")  # type: ignore[return-value]


class TargetedHandler(RecordingHandler):
    """The harness's recording handler, misbehaving (``script``, ``always``) only towards ``target``:
    mail for anyone else, from events that other tests may have left in the queue, is accepted and not
    counted in ``data_attempts``."""

    def __init__(self, target: str = "") -> None:
        super().__init__()
        self.target = target

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.target.lower() in (r.lower() for r in envelope.rcpt_tos):
            return await super().handle_DATA(server, session, envelope)
        self._record(envelope, envelope.original_content or b"")
        return "250 OK"


class GatedHandler(RecordingHandler):
    """Holds every DATA for ``target`` until the test gives the answer for it (``answers[i]`` for the
    i-th), so the test decides when each attempt ends and how."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.answers: dict[int, str] = {}

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or b""
        if self.target.lower() not in (r.lower() for r in envelope.rcpt_tos):
            self._record(envelope, raw)
            return "250 OK"
        attempt = self.data_attempts
        self.data_attempts += 1
        while attempt not in self.answers:
            await asyncio.sleep(0.01)
        if self.answers[attempt].startswith("250"):
            self._record(envelope, raw)
        return self.answers[attempt]


class Relay(SmtpServer):
    """A test relay with its own handler, on a free port or on one chosen beforehand (to be stopped and
    started again there)."""

    def __init__(self, handler: RecordingHandler | None = None, port: int | None = None) -> None:
        super().__init__()
        self.handler = handler or TargetedHandler()
        self.port = port or self.port
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay()
    server.start()
    yield server
    server.stop()


# --- relay answers -------------------------------------------------------------------------------------


async def test_temporary_refusals_are_retried_until_the_relay_accepts(notification_settings, relay):
    """421 (the relay closes the connection), then 451 (RSET, same connection), then 250."""
    settings = notification_settings.model_copy(update={"smtp_pool_size": 1, "smtp_port": relay.port})
    email = unique_email("retry")
    relay.handler.target = email
    relay.handler.script.extend(["421", "451"])
    async with running(app := notification_app(settings)):
        await publish(settings.amqp_url, submitted(email))
        row = await final_delivery(settings, email, "sent")
        await processing_ended(app)
    assert row["attempts"] == 3
    assert row["last_error"] is None and row["sent_at"] is not None
    assert relay.handler.data_attempts == 3
    mails = relay.handler.to(email)
    assert len(mails) == 1
    assert mails[0].message["Message-ID"] == row["message_id"]
    assert (await deliveries_to(settings, email))[0]["attempts"] == 3


async def test_a_permanent_refusal_fails_the_delivery_without_further_attempts(notification_settings, relay):
    settings = notification_settings.model_copy(update={"smtp_pool_size": 1, "smtp_port": relay.port})
    email = unique_email("refused")
    relay.handler.target = email
    relay.handler.script.append("550")
    async with running(app := notification_app(settings)):
        await publish(settings.amqp_url, submitted(email))
        row = await final_delivery(settings, email, "failed")
        await processing_ended(app)
        later = (await deliveries_to(settings, email))[0]
    assert "550" in row["last_error"]
    assert row["attempts"] == 1 and later["attempts"] == 1 and later["status"] == "failed"
    assert relay.handler.data_attempts == 1
    assert relay.handler.to(email) == []


async def test_a_connection_lost_after_data_is_unknown_and_resent_with_the_same_message_id(
    notification_settings, relay
):
    """The residual duplicate window, made visible.

    The relay receives the whole message and then the connection breaks before its answer reaches us:
    whether the relay took the mail cannot be known. The delivery becomes ``unknown`` and is sent again,
    with the same Message-ID, so the recipient may get a second copy (here the test relay did keep the
    first one, so two arrive). Receiving systems and mail programs can recognise the copy by its
    Message-ID; this, and a sender dying between the relay's 250 and the status update (the lease runs
    out, same path), are the only ways a recipient sees one event's mail twice.
    """
    # A longer backoff keeps the row 'unknown' long enough to be seen.
    settings = notification_settings.model_copy(
        update={
            "smtp_pool_size": 1,
            "smtp_port": relay.port,
            "retry_base_seconds": 1.5,
            "retry_max_seconds": 1.5,
        }
    )
    email = unique_email("unknown")
    relay.handler.target = email
    relay.handler.script.append("drop")
    async with running(app := notification_app(settings)):
        await publish(settings.amqp_url, submitted(email))

        async def is_unknown() -> asyncpg.Record | None:
            rows = await deliveries_to(settings, email)
            return rows[0] if rows and rows[0]["status"] == "unknown" else None

        unknown = await eventually(is_unknown, "the delivery to become unknown")
        assert unknown["attempts"] == 1
        assert "Disconnected" in unknown["last_error"] or "Connection" in unknown["last_error"]
        row = await final_delivery(settings, email, "sent")
        await processing_ended(app)
    assert row["attempts"] == 2
    mails = relay.handler.to(email)
    assert len(mails) == 2
    assert {m.message["Message-ID"] for m in mails} == {row["message_id"]}


async def test_mail_waits_while_the_relay_is_down_and_arrives_once_when_it_is_back(notification_settings):
    port = free_port()
    first = Relay(port=port)
    first.start()
    settings = notification_settings.model_copy(update={"smtp_port": port})
    async with running(app := notification_app(settings)):
        warm = unique_email("before-outage")
        await publish(settings.amqp_url, submitted(warm))
        await first.wait_for(warm)  # the pool now holds an open connection to the relay
        first.stop()

        emails = [unique_email("outage") for _ in range(3)]
        for email in emails:
            await publish(settings.amqp_url, submitted(email))
        seen_retrying: set[str] = set()

        async def all_retrying_repeatedly() -> bool:
            for email in emails:
                rows = await deliveries_to(settings, email)
                assert all(r["status"] != "sent" for r in rows)
                if rows and rows[0]["status"] == "retrying" and rows[0]["attempts"] >= 2:
                    seen_retrying.add(email)
            return seen_retrying == set(emails)

        await eventually(all_retrying_repeatedly, "every delivery to be retried while the relay is down")
        for email in emails:
            (row,) = await deliveries_to(settings, email)
            assert row["last_error"]

        second = Relay(port=port)
        second.start()
        try:
            for email in emails:
                await final_delivery(settings, email, "sent")
            await processing_ended(app)
            for email in emails:
                assert len(second.handler.to(email)) == 1
                assert first.handler.to(email) == []
            assert len(first.handler.to(warm)) == 1 and second.handler.to(warm) == []
        finally:
            second.stop()


async def test_the_same_event_delivered_twice_sends_one_mail(notification_settings, smtp):
    duplicates = MESSAGES_CONSUMED.labels("notification.mail", "duplicate")
    before = duplicates._value.get()
    email = unique_email("twice")
    event = submitted(email)
    async with running(app := notification_app(notification_settings)):
        message_id = await publish(notification_settings.amqp_url, event)
        await publish(notification_settings.amqp_url, event, message_id=message_id)
        await smtp.wait_for(email)

        async def second_seen() -> bool:
            return duplicates._value.get() >= before + 1

        await eventually(second_seen, "the redelivery to be recognised")
        await final_delivery(notification_settings, email, "sent")
        await processing_ended(app)
    assert len(smtp.handler.to(email)) == 1
    rows = await deliveries_to(notification_settings, email)
    assert len(rows) == 1 and rows[0]["event_id"] == message_id


# --- claims, leases and late answers --------------------------------------------------------------------


async def record_intended_mail(session_factory, email: str) -> None:
    """What the consumer does for a registration.submitted event: one pending delivery row."""
    event = submitted(email)
    meta = EventMeta(
        event_id=str(uuid.uuid4()),
        event_type=event.event_type,
        correlation_id=None,
        occurred_at=None,
        attempt=1,
    )
    async with session_factory() as session, session.begin(), deferred_writes(session):
        await make_mail_handler("kaiserslautern.de", "test-address-hash-secret")(session, event, meta)


def data_started(handler: RecordingHandler, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return handler.data_attempts >= count

    return check


def two_senders(settings: NotificationSettings, session_factory) -> tuple[Dispatcher, Dispatcher]:
    """Two replicas sharing the delivery log."""
    first = Dispatcher(settings, session_factory, TemplateRenderer(), SmtpPool(settings))
    second = Dispatcher(settings, session_factory, TemplateRenderer(), SmtpPool(settings))
    return first, second


async def expire_lease(settings: NotificationSettings, email: str) -> None:
    """What the passing of the lease does, judged (as every lease is) by the database's clock."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(
            "UPDATE notification.deliveries SET lease_until = now() - interval '1 second' "
            "WHERE recipient_email = $1 AND status = 'sending'",
            email,
        )
    finally:
        await conn.close()


async def test_a_sender_whose_lease_ran_out_cannot_overwrite_the_next_attempt(notification_settings):
    """Replica A's send hangs past its lease; replica B takes the row over and sends. A's late 550 must not
    mark the row failed while B is sending, nor hide B's success."""
    email = unique_email("lease")
    gated = Relay(GatedHandler(email))
    gated.start()
    settings = notification_settings.model_copy(update={"smtp_pool_size": 1, "smtp_port": gated.port})
    engine = create_engine(settings.database_url, SCHEMA, 2)
    try:
        session_factory = create_session_factory(engine)
        await record_intended_mail(session_factory, email)
        first, second = two_senders(settings, session_factory)

        a = asyncio.create_task(first.dispatch_once())

        await eventually(data_started(gated.handler, 1), "replica A's DATA")
        await expire_lease(settings, email)
        b = asyncio.create_task(second.dispatch_once())
        await eventually(data_started(gated.handler, 2), "replica B's DATA, after taking over the lease")
        (row,) = await deliveries_to(settings, email)
        assert (row["status"], row["attempts"]) == ("sending", 2)

        gated.handler.answers[0] = "550 5.7.1 late answer to the first attempt"
        await asyncio.wait_for(a, 10)
        (row,) = await deliveries_to(settings, email)
        assert (row["status"], row["attempts"]) == ("sending", 2)  # A's answer did not land

        gated.handler.answers[1] = "250 OK"
        await asyncio.wait_for(b, 10)
        (row,) = await deliveries_to(settings, email)
        assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
        assert len(gated.handler.to(email)) == 1
        await first.pool.close()
        await second.pool.close()
    finally:
        await engine.dispose()
        gated.stop()


async def test_a_late_answer_still_counts_when_nobody_took_the_row_over(notification_settings):
    """The lease ran out (the row became 'unknown'), but the relay's 250 arrives before anyone sent the
    mail again: it is recorded as sent, and no copy goes out."""
    email = unique_email("late")
    gated = Relay(GatedHandler(email))
    gated.start()
    settings = notification_settings.model_copy(update={"smtp_pool_size": 1, "smtp_port": gated.port})
    engine = create_engine(settings.database_url, SCHEMA, 2)
    try:
        session_factory = create_session_factory(engine)
        await record_intended_mail(session_factory, email)
        sender = Dispatcher(settings, session_factory, TemplateRenderer(), SmtpPool(settings))
        task = asyncio.create_task(sender.dispatch_once())

        await eventually(data_started(gated.handler, 1), "the DATA")
        conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:  # what another replica's claim does first with an expired lease
            await conn.execute(
                "UPDATE notification.deliveries SET status = 'unknown', last_error = 'sender stopped while "
                "sending' WHERE recipient_email = $1",
                email,
            )
        finally:
            await conn.close()
        gated.handler.answers[0] = "250 OK"
        await asyncio.wait_for(task, 10)
        (row,) = await deliveries_to(settings, email)
        assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
        await sender.pool.close()
    finally:
        await engine.dispose()
        gated.stop()


# --- headers -------------------------------------------------------------------------------------------

INJECTIONS = [
    pytest.param("Evil\r\nBcc: victim@example.org", id="crlf"),
    pytest.param("=?utf-8?q?Evil=0D=0ABcc=3A_victim=40example.org?=", id="encoded-word"),
]


@pytest.mark.parametrize("name", INJECTIONS)
async def test_a_line_break_in_a_name_cannot_add_a_recipient(notification_settings, smtp, name):
    email = unique_email("injection")
    # The working group's title ends up in the subject: the same attack through a staff member's input.
    # The address counts as proven here, so that the name reaches the To header at all.
    event = submitted(email, name=name, title=name, proven=True)
    async with running(app := notification_app(notification_settings)):
        await publish(notification_settings.amqp_url, event)
        await smtp.wait_for(email)
        await processing_ended(app)
    (mail,) = smtp.handler.to(email)
    assert mail.envelope_to == [email]
    assert smtp.handler.to("victim@example.org") == []
    assert mail.message["Bcc"] is None
    head = mail.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert not [line for line in head if re.match(rb"(?i)bcc\s*:", line)]
    # Every physical line is one of the headers we write, or the folded continuation of one.
    names = [line.split(b":", 1)[0].decode() for line in head if not line[:1].isspace()]
    assert sorted(names) == sorted(HEADERS_WE_WRITE)
    (to_header,) = [h for h in mail.message.raw_items() if h[0] == "To"]
    assert "\n" not in to_header[1].replace("\r\n ", " ")  # unfolded, the To header is one line
    (address,) = mail.message["To"].addresses
    assert address.addr_spec == email
    assert "Evil" in address.display_name
    assert "\r" not in address.display_name and "\n" not in address.display_name
    assert "\n" not in str(mail.message["Subject"]) and "\r" not in str(mail.message["Subject"])


# --- the rate limit --------------------------------------------------------------------------------------


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


def most_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The largest number of ``times`` inside any half-open window [t, t + window)."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def test_the_rate_limit_allows_no_more_than_n_mails_in_any_minute():
    clock = FakeClock()
    limiter = RateLimiter(6, clock=clock.monotonic, sleep=clock.sleep)
    starts: list[float] = []

    async def send() -> None:
        permit = await limiter.acquire()
        starts.append(clock.now)
        permit.done()

    await asyncio.gather(*(send() for _ in range(30)))
    assert len(starts) == 30
    assert most_in_any_window(starts) == 6
    # ... and it does not throttle more than it must: 30 mails take four windows.
    assert starts[-1] - starts[0] == pytest.approx(240.0)


async def test_the_rate_limit_counts_a_send_until_the_relay_has_answered():
    """A send that takes long (slow relay, slow connect) keeps its slot until it ends, so mails cannot
    bunch up at the relay: the next one may start only a full window after the earlier one ended."""
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock.monotonic, sleep=clock.sleep)
    spans: list[tuple[float, float]] = []
    for duration in (30.0, 0.0, 5.0, 0.0, 0.0):
        permit = await limiter.acquire()
        start = clock.now
        clock.now += duration
        permit.done()
        spans.append((start, clock.now))
    for earlier, later in zip(spans, spans[2:], strict=False):
        assert later[0] >= earlier[1] + 60.0
    # Whatever instant the relay counts a mail at (between start and end), no window holds more than 2.
    assert most_in_any_window([s for s, _ in spans]) <= 2
    assert most_in_any_window([e for _, e in spans]) <= 2


async def test_the_rate_limit_waits_for_sends_in_flight_and_frees_cancelled_slots():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock.monotonic, sleep=clock.sleep)
    first = await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the first send is still in flight
    first.cancel()  # it never reached the relay (no connection)
    second = await asyncio.wait_for(waiting, 1)
    assert clock.now == 1000.0  # no window to wait for: nothing was sent
    second.done()
    await limiter.acquire()
    assert clock.now == pytest.approx(1060.0)


async def test_no_rate_limit_means_no_waiting():
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock.monotonic, sleep=clock.sleep)
    for _ in range(100):
        (await limiter.acquire()).done()
    assert clock.sleeps == []


# --- TLS -------------------------------------------------------------------------------------------------


async def test_tls_none_never_upgrades_even_when_the_relay_offers_starttls(notification_settings):
    """With ``smtp_tls=none`` the connection stays plain even if the relay advertises STARTTLS. The relay
    here offers STARTTLS without a usable certificate: any attempt to upgrade would fail the send."""
    relay = SmtpServer()
    relay.controller = Controller(
        relay.handler,
        hostname="127.0.0.1",
        port=relay.port,
        tls_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
        require_starttls=False,
    )
    relay.start()
    try:
        probe = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False, timeout=5)
        await probe.connect()
        await probe.ehlo()
        assert probe.supports_extension("starttls")
        await probe.quit()
        # aiosmtplib's own default would try the upgrade, and fail:
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError, OSError)):
            await aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, timeout=5).connect()

        settings = notification_settings.model_copy(update={"smtp_port": relay.port, "smtp_tls": "none"})
        pool = SmtpPool(settings)
        email = unique_email("plain")
        raw = b"From: a@example.org\r\nTo: " + email.encode() + b"\r\nSubject: plain\r\n\r\nhello\r\n"
        try:
            result = await pool.send(raw, "a@example.org", email)
        finally:
            await pool.close()
        assert result.outcome == "sent", result.detail
        assert len(relay.handler.to(email)) == 1
    finally:
        relay.stop()
