"""Bounces in by SMTP, end to end: a mail sent by the service to a real SMTP server, then a delivery status
notification for it sent with aiosmtplib to the service's bounce listener, as the city's mail system forwards
it: the delivery bounces, the address is suppressed, ``mail.bounced`` is published and a later mail to the
address is not sent. A forged return path is refused; an unreadable mail is kept; readiness shows the
listener."""

from __future__ import annotations

import socket

import aiosmtplib
import pytest

from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from services.notification.listener import BounceListener
from tests.conftest import running, unique_email
from tests.notification.test_bounces import (
    BOUNCES,
    _bounced,
    _passes,
    _published,
    _status_of_second,
    database,
    delivery_of,
    sent_mail,
    suppression,
)
from tests.notification.test_sending import submitted
from tests.support.bounces import dsn, not_a_bounce
from tests.support.events import publish_event
from tests.support.smtp import free_port
from tests.support.wait import eventually


@pytest.fixture
def settings(notification_settings: NotificationSettings) -> NotificationSettings:
    return notification_settings.model_copy(
        update={
            "bounce_address": BOUNCES,
            "bounce_listen": f"127.0.0.1:{free_port()}",
            "bounce_max_bytes": 200_000,
        }
    )


async def forward(settings: NotificationSettings, raw: bytes, to: str) -> str:
    """Send a bounce to the listener as a mail system does: the null sender, RCPT the return path."""
    host, _, port = settings.bounce_listen.rpartition(":")
    async with aiosmtplib.SMTP(hostname=host, port=int(port), timeout=10) as client:
        await client.mail("")
        await client.rcpt(to)
        return (await client.data(raw)).message


async def test_a_dsn_sent_to_the_listener_bounces_the_mail_for_good(settings, smtp):
    email = unique_email("listener")
    app = notification_app(settings)
    async with running(app) as client:
        ready = (await client.get("/readyz")).json()
        assert ready["workers"]["bounce-listener"]["healthy"] is True

        mail, row = await sent_mail(settings, smtp, email)
        answer = await forward(settings, dsn(mail.envelope_from, email, "5.1.1"), mail.envelope_from)
        assert answer.startswith("OK")

        bounced = await _bounced(settings, email)
        assert bounced is not None and "5.1.1" in bounced["last_error"]
        assert await suppression(settings, email) is not None
        [event] = await eventually(lambda: _published(settings, row["id"]), "mail.bounced published")
        assert event["status"] == "5.1.1" and event["registration_id"]

        await publish_event(settings.amqp_url, submitted(email))
        later = await eventually(lambda: _status_of_second(settings, email), "the second mail recorded")
        assert later["status"] == "suppressed"
        await eventually(lambda: _passes(app, 2), "two sender passes")
    assert len(smtp.handler.to(email)) == 1


async def test_the_listener_refuses_forged_return_paths_and_keeps_unreadable_mail(settings, smtp):
    email = unique_email("listener-forged")
    app = notification_app(settings)
    async with running(app):
        mail, row = await sent_mail(settings, smtp, email)
        signed = mail.envelope_from
        at = signed.index("@")
        forged = signed[: at - 1] + ("a" if signed[at - 1] != "a" else "b") + signed[at:]
        for to in (forged, BOUNCES, "postmaster@mitwirkung.kaiserslautern.de", email):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await forward(settings, dsn(to, email), to)
            assert refused.value.code == 550
        assert (await delivery_of(settings, email))["status"] == "sent"
        assert await suppression(settings, email) is None

        # Too large: refused whole, nothing recorded.
        with pytest.raises(aiosmtplib.SMTPResponseException) as too_large:
            await forward(settings, dsn(signed, email) + (b"x" * 900 + b"\r\n") * 300, signed)
        assert too_large.value.code == 552

        raw = not_a_bounce(signed)
        await forward(settings, raw, signed)
        async with database(settings) as conn:
            kept = await conn.fetch(
                "SELECT outcome, raw FROM notification.bounce_mails WHERE delivery_id = $1", row["id"]
            )
    assert [k["outcome"] for k in kept] == ["unparseable"]
    assert b"Subject: Abwesenheit" in bytes(kept[0]["raw"])
    assert (await delivery_of(settings, email))["status"] == "sent"


async def test_a_listener_that_cannot_listen_is_a_worker_in_error_not_a_crash(settings, smtp):
    host, _, port = settings.bounce_listen.rpartition(":")
    app = notification_app(settings)
    [listener] = [w for w in app.state.runtime.workers if isinstance(w, BounceListener)]
    listener.bind_retry_seconds = 0.2
    taken = socket.socket()
    taken.bind((host, int(port)))
    taken.listen()
    try:
        async with running(app) as client:
            answer = await client.get("/readyz")
            assert answer.status_code == 200
            worker = answer.json()["workers"]["bounce-listener"]
            # The class of the error only: its text (hosts, ports) goes to the log, never to /readyz.
            assert worker["healthy"] is False and worker["error_class"] == "OSError"
            email = unique_email("listener-down")
            mail, _ = await sent_mail(settings, smtp, email)  # the service works on

            taken.close()  # the port comes free: the listener takes it

            async def healthy() -> bool:
                workers = (await client.get("/readyz")).json()["workers"]
                return workers["bounce-listener"]["healthy"]

            await eventually(healthy, "the listener listening")
            await forward(settings, dsn(mail.envelope_from, email), mail.envelope_from)
            assert await _bounced(settings, email) is not None
    finally:
        taken.close()


def test_bounces_in_need_a_bounce_address(notification_settings):
    for update in ({"bounce_listen": "127.0.0.1:2526"}, {"bounce_imap_url": "imap://u:p@127.0.0.1/INBOX"}):
        with pytest.raises(ValueError, match="NOTIFICATION_BOUNCE_ADDRESS"):
            notification_app(notification_settings.model_copy(update=update))
