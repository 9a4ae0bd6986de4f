"""A registration whose address bounces ends as "bounced" on the staff participant list, with no further
mail to it, across the services and against real servers: asynchronously by both routes (a DSN forwarded to
the notification service's bounce listener, and one delivered into the IMAP mailbox it polls, a real
Dovecot) and synchronously (the relay refusing the recipient at RCPT)."""

from __future__ import annotations

import csv
import io

from services.notification.app import create_app as notification_app
from services.registration.app import create_app as registration_app
from tests.conftest import registration_body, running
from tests.e2e.test_journey import token_from
from tests.notification.test_bounce_listener import forward
from tests.notification.test_bounces import BOUNCES
from tests.support.bounces import dsn
from tests.support.catalog import create_working_group
from tests.support.smtp import free_port
from tests.support.staff import auth
from tests.support.wait import eventually


async def test_bounced_addresses_are_marked_on_the_participant_list_and_get_no_more_mail(
    registration_settings, notification_settings, smtp, dovecot
):
    notification = notification_settings.model_copy(
        update={
            "bounce_address": BOUNCES,
            "bounce_listen": f"127.0.0.1:{free_port()}",
            "bounce_imap_url": dovecot.url,
            "bounce_imap_poll_interval": 0.3,
        }
    )
    reg_app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    staff, admin = auth(registration_settings, "staff"), auth(registration_settings, "admin")
    async with running(reg_app) as api, running(notification_app(notification)):
        wg = await create_working_group(reg_app.state.runtime)
        people = [registration_body(working_group_id=wg) for _ in range(4)]
        gone, in_mailbox, refused, fine = (p["email"] for p in people)
        for body in people:
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
            token = token_from((await smtp.wait_for(body["email"]))[0])
            assert (await api.post("/v1/registrations/confirm", json={"token": token})).status_code == 200
            await smtp.wait_for(body["email"], count=2)  # confirmed

        # Asynchronously: the confirmation to `gone` bounces a while later, by way of the city's mail system.
        confirmation = smtp.handler.to(gone)[1]
        await forward(
            notification, dsn(confirmation.envelope_from, gone, "5.1.1"), confirmation.envelope_from
        )

        async def marked(email: str) -> dict | None:
            listed = (await api.get(f"/v1/working-groups/{wg}/participants", headers=staff)).json()
            person = next(p for p in listed if p["email"] == email)
            return person if person["mail_status"] == "bounced" else None

        await eventually(lambda: marked(gone), "the bounced address marked on the list")

        # Asynchronously, the other route: the bounce lands in the mailbox the service polls.
        confirmation = smtp.handler.to(in_mailbox)[1]
        dovecot.deliver(
            dsn(confirmation.envelope_from, in_mailbox, "5.2.1", "smtp; 550 5.2.1 Mailbox disabled")
        )
        await eventually(
            lambda: marked(in_mailbox), "the address bounced into the mailbox marked on the list"
        )

        # Synchronously: the relay refuses `refused` at RCPT when the meeting is moved.
        smtp.handler.refuse_rcpt.add(refused.lower())
        moved = await api.patch(
            f"/v1/working-groups/{wg}/meetings/1", json={"venue": "Rathaus Nord"}, headers=admin
        )
        assert moved.status_code == 200, moved.text
        await smtp.wait_for(fine, count=3)  # the others got the news
        await eventually(lambda: marked(refused), "the refused address marked on the list")

        listed = (await api.get(f"/v1/working-groups/{wg}/participants", headers=staff)).json()
        expected = {gone: "bounced", in_mailbox: "bounced", refused: "bounced", fine: "ok"}
        assert {p["email"]: p["mail_status"] for p in listed} == expected
        as_csv = await api.get(
            f"/v1/working-groups/{wg}/participants", params={"format": "csv"}, headers=staff
        )
        rows = list(csv.DictReader(io.StringIO(as_csv.text.lstrip("\ufeff")), delimiter=";"))
        assert {r["email"]: r["mail_status"] for r in rows} == expected

        # No further mail to either: the next change reaches only the third person.
        moved = await api.patch(
            f"/v1/working-groups/{wg}/meetings/1", json={"venue": "Rathaus Süd"}, headers=admin
        )
        assert moved.status_code == 200
        await smtp.wait_for(fine, count=4)
    assert len(smtp.handler.to(gone)) == 2  # submitted, confirmed; no meeting mails
    assert len(smtp.handler.to(in_mailbox)) == 2
    assert len(smtp.handler.to(refused)) == 2  # submitted, confirmed; the moves were refused or suppressed
