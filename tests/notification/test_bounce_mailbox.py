"""Bounces in by IMAP, against a real IMAP server (Dovecot, started by the test on its own port with its own
Maildir): a delivery status notification delivered into the mailbox is picked up by the service's poll and
bounces the mail; a handled mail is flagged and not handled twice; an unreachable mailbox or a refused login
is the worker in error on /readyz and in the metrics, and the service runs on."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from services.notification.mailbox import BounceMailbox
from tests.conftest import running, unique_email
from tests.notification.test_bounces import (
    BOUNCES,
    _bounced,
    _published,
    bounced_events,
    database,
    delivery_of,
    sent_mail,
    suppression,
)
from tests.support.bounces import dsn, not_a_bounce
from tests.support.imap import Dovecot
from tests.support.smtp import free_port
from tests.support.tlscerts import issue, make_ca
from tests.support.wait import eventually


def settings_for(notification_settings: NotificationSettings, url: str) -> NotificationSettings:
    return notification_settings.model_copy(
        update={"bounce_address": BOUNCES, "bounce_imap_url": url, "bounce_imap_poll_interval": 0.3}
    )


def mailbox_of(app) -> BounceMailbox:
    return next(w for w in app.state.runtime.workers if isinstance(w, BounceMailbox))


async def polls_after(mailbox: BounceMailbox, count: int) -> int:
    start = mailbox.polls

    async def done() -> bool:
        return mailbox.polls >= start + count

    await eventually(done, f"{count} more polls of the mailbox")
    return mailbox.polls


async def test_a_dsn_in_the_mailbox_bounces_the_mail_once(notification_settings, smtp, dovecot):
    settings = settings_for(notification_settings, dovecot.url)
    email = unique_email("imap")
    app = notification_app(settings)
    async with running(app) as client:
        mail, row = await sent_mail(settings, smtp, email)
        dovecot.deliver(dsn(mail.envelope_from, email, "5.1.1"))
        dovecot.deliver(not_a_bounce(mail.envelope_from))
        mailbox_of(app).wake()
        bounced = await eventually(lambda: _bounced(settings, email), "the delivery bounced")
        assert "5.1.1" in bounced["last_error"]
        assert await suppression(settings, email) is not None
        await eventually(lambda: _published(settings, row["id"]), "mail.bounced published")

        # Flagged: later polls handle neither mail again.
        await polls_after(mailbox_of(app), 3)
        ready = (await client.get("/readyz")).json()
        assert ready["workers"]["bounce-mailbox"]["healthy"] is True
    async with database(settings) as conn:
        handled = await conn.fetch(
            "SELECT outcome, source, raw IS NOT NULL AS kept FROM notification.bounce_mails "
            "WHERE delivery_id = $1 ORDER BY received_at",
            row["id"],
        )
    assert [(h["outcome"], h["source"], h["kept"]) for h in handled] == [
        ("permanent", "imap", False),
        ("unparseable", "imap", True),
    ]
    assert len(await bounced_events(settings, row["id"])) == 1
    # Still in the mailbox for staff, marked as handled.
    assert len(list((dovecot.maildir / "cur").iterdir())) == 2


@pytest.mark.parametrize("problem", ["unreachable", "wrong password"])
async def test_a_mailbox_that_cannot_be_read_is_a_worker_in_error(
    notification_settings, smtp, dovecot, problem
):
    url = (
        f"imap://bounces:x@127.0.0.1:{free_port()}/INBOX"
        if problem == "unreachable"
        else dovecot.url.replace(dovecot.password, "wrong")
    )
    settings = settings_for(notification_settings, url)
    email = unique_email("imap-down")
    app = notification_app(settings)
    async with running(app) as client:
        await polls_after(mailbox_of(app), 2)
        answer = await client.get("/readyz")
        assert answer.status_code == 200
        worker = answer.json()["workers"]["bounce-mailbox"]
        assert worker["healthy"] is False and worker["error_class"]
        metrics = (await client.get("/metrics")).text
        assert 'mitwirkung_worker_healthy{service="notification",worker="bounce-mailbox"} 0.0' in metrics
        # The rest of the service works on.
        await sent_mail(settings, smtp, email)
    assert (await delivery_of(settings, email))["status"] == "sent"


async def test_imaps_trusts_the_citys_ca_and_refuses_another(notification_settings, smtp, tmp_path):
    """imaps:// verifies the mailbox's certificate against NOTIFICATION_SMTP_CA_FILE (the city's CA)."""
    city, other = make_ca(tmp_path, "stadt-ca"), make_ca(tmp_path, "other-ca")
    root = Path(tempfile.mkdtemp(prefix="mitwirkung-dovecot-tls-"))
    server = Dovecot(root, tls=issue(tmp_path, city, "imap", host="127.0.0.1"))
    server.start()
    try:
        for ca, healthy in ((city, True), (other, False)):
            settings = settings_for(notification_settings, server.tls_url).model_copy(
                update={"smtp_ca_file": str(ca.cert_file)}
            )
            app = notification_app(settings)
            async with running(app) as client:
                await polls_after(mailbox_of(app), 1)
                worker = (await client.get("/readyz")).json()["workers"]["bounce-mailbox"]
                assert worker["healthy"] is healthy, worker
                if not healthy:
                    assert worker["error_class"] == "SSLCertVerificationError", worker
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
