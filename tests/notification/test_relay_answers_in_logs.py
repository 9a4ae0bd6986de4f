"""Issue 21, item 8b: a relay's answer (which may quote the recipient) is logged at DEBUG only, and no
line at INFO or above names the recipient."""

from __future__ import annotations

import logging

from services.notification.app import create_app as notification_app
from tests.conftest import running, unique_email
from tests.notification.test_sending import final_delivery, relay, submitted  # noqa: F401 (fixture)
from tests.support.events import publish_event as publish
from tests.support.logs import collected
from tests.support.mail import processing_ended


async def test_relay_answers_are_debug_and_the_recipient_never_info(notification_settings, relay):  # noqa: F811
    settings = notification_settings.model_copy(update={"smtp_pool_size": 1, "smtp_port": relay.port})
    email = unique_email("refused")
    relay.handler.target = email
    relay.handler.script.append("550")
    app = notification_app(settings)
    with collected("services.notification") as records:
        async with running(app):
            await publish(settings.amqp_url, submitted(email))
            row = await final_delivery(settings, email, "failed")
            await processing_ended(app)
    assert "Mailbox unavailable" in row["last_error"]
    loud = [str(r.msg) for r in records if r.levelno >= logging.INFO]
    assert any("mail attempt recorded" in line for line in loud)
    assert not [line for line in loud if "Mailbox unavailable" in line or email in line]
    quiet = [str(r.msg) for r in records if r.levelno == logging.DEBUG]
    assert any("Mailbox unavailable" in line for line in quiet)
