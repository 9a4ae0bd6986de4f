"""The return path (VERP): every mail's envelope sender names its delivery, signed, so that a bounce can be
traced to the mail it is about and a forged one to nobody."""

from __future__ import annotations

import uuid

import asyncpg

from services.notification.app import create_app as notification_app
from services.notification.domain import bounce_sender, delivery_of_bounce
from shared.db import asyncpg_dsn
from tests.conftest import running, unique_email
from tests.notification.test_sending import submitted
from tests.support.events import publish_event
from tests.support.smtp import SmtpServer

KEY = "k" * 40
BOUNCES = "bounces@mitwirkung.kaiserslautern.de"


def test_a_tagged_address_names_its_delivery_and_nothing_else() -> None:
    delivery = uuid.uuid4()
    tagged = bounce_sender(BOUNCES, delivery, KEY)
    assert tagged.startswith("bounces+") and tagged.endswith("@mitwirkung.kaiserslautern.de")
    assert len(tagged.partition("@")[0]) <= 64
    assert delivery_of_bounce(tagged, BOUNCES, KEY) == delivery
    assert delivery_of_bounce(tagged.upper(), BOUNCES, KEY) == delivery  # mail systems change case

    local, _, domain = tagged.partition("@")
    other = bounce_sender(BOUNCES, uuid.uuid4(), KEY).partition("@")[0]
    forged = [
        f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}",  # the signature changed
        f"{other.split('-')[0]}-{local.split('-')[1]}@{domain}",  # another id under this signature
        bounce_sender(BOUNCES, delivery, "x" * 40),  # signed with another key
        f"{local}@elsewhere.example",
        f"postmaster+{local.partition('+')[2]}@{domain}",
        BOUNCES,
        "bounces+not-base32!@mitwirkung.kaiserslautern.de",
    ]
    assert [delivery_of_bounce(address, BOUNCES, KEY) for address in forged] == [None] * len(forged)


async def test_each_mail_goes_out_with_its_deliverys_signed_return_path(
    notification_settings, smtp: SmtpServer
):
    settings = notification_settings.model_copy(update={"bounce_address": BOUNCES})
    email = unique_email("verp")
    async with running(notification_app(settings)):
        await publish_event(settings.amqp_url, submitted(email))
        [mail] = await smtp.wait_for(email)
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        delivery_id = await conn.fetchval(
            "SELECT id FROM notification.deliveries WHERE recipient_email = $1", email
        )
    finally:
        await conn.close()
    assert mail.envelope_from == bounce_sender(BOUNCES, delivery_id, settings.address_hash_secret)
    assert delivery_of_bounce(mail.envelope_from, BOUNCES, settings.address_hash_secret) == delivery_id
    assert mail.message["From"].addresses[0].addr_spec == "mitwirkung@kaiserslautern.de"  # the header stays
