"""No working link at rest (real Postgres, RabbitMQ and SMTP): every mail that carries a private link goes
out with it, and once sent its row in the delivery log keeps no ``token=``; published events lose theirs
at the next housekeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Text, func, insert, select, update

from services.notification.app import create_app as notification_app
from services.notification.models import deliveries
from services.proposals.app import create_app as proposals_app
from services.proposals.models import outbox as proposals_outbox
from services.proposals.models import working_groups as proposal_working_groups
from services.registration.app import create_app as registration_app
from services.registration.models import outbox as registration_outbox
from tests.conftest import registration_body, running, unique_email
from tests.privacy.test_erasure import link_token
from tests.proposals.conftest import proposal_body
from tests.support.catalog import create_working_group
from tests.support.wait import eventually


async def test_sent_mails_and_published_events_keep_no_working_link(
    registration_settings, notification_settings, proposals_settings, smtp
):
    reg_app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    prop_app = proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    notif_app = notification_app(notification_settings)
    resident, author, requester = unique_email("links"), unique_email("author"), unique_email("erase")
    async with running(reg_app) as api, running(notif_app), running(prop_app) as proposals:
        wg = await create_working_group(
            reg_app.state.runtime, starts_at=datetime.now(UTC) + timedelta(days=30), capacity=5
        )
        async with prop_app.state.runtime.transaction() as session:
            await session.execute(insert(proposal_working_groups).values(id=wg, title="Links (Test)"))

        # Every kind of mail with a private link: opt-in, confirmation, a proposal's receipt, erasure link.
        body = registration_body(working_group_id=wg, email=resident)
        assert (await api.post("/v1/registrations", json=body)).status_code == 202
        token = link_token(await smtp.wait_for(resident), "/v1/registrations/confirm")
        assert (await api.post("/v1/registrations/confirm", json={"token": token})).status_code == 200
        answer = await proposals.post("/v1/proposals", json=proposal_body(wg, author_email=author))
        assert answer.status_code == 202
        answer = await api.post("/v1/privacy/erasure-requests", json={"email": requester})
        assert answer.status_code == 202

        mails = [
            *await smtp.wait_for(resident, count=2),
            *await smtp.wait_for(author),
            *await smtp.wait_for(requester),
        ]
        for mail in mails:  # the links did go out
            assert "token=" in mail.message.get_body(("plain",)).get_content(), mail.message["Subject"]

        recipients = (resident, author, requester)

        async def rows() -> list:
            async with notif_app.state.runtime.transaction() as conn:
                return (
                    await conn.execute(
                        select(deliveries.c.template, deliveries.c.status, deliveries.c.context).where(
                            deliveries.c.recipient_email.in_(recipients)
                        )
                    )
                ).all()

        async def all_sent() -> bool:
            found = await rows()
            return len(found) == 4 and {r.status for r in found} == {"sent"}

        await eventually(all_sent, "the four mails to be marked sent", timeout=30)
        found = await rows()
        assert {r.template for r in found} == {
            "registration_submitted",
            "registration_confirmed",
            "proposal_submitted",
            "privacy_erasure_request_submitted",
        }
        for row in found:
            assert "token=" not in str(row.context), (row.template, row.context)
            assert row.context  # the rest of the context stays

        # Published events: a minute after publishing, housekeeping takes their links.
        for app, outbox in ((reg_app, registration_outbox), (prop_app, proposals_outbox)):
            runtime = app.state.runtime
            async with runtime.transaction() as session:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.published_at.is_not(None))
                    .values(published_at=outbox.c.published_at - timedelta(minutes=2))
                )
            await runtime.housekeeping()
            async with runtime.transaction() as session:
                left = await session.scalar(
                    select(func.count())
                    .select_from(outbox)
                    .where(outbox.c.published_at.is_not(None))
                    .where(outbox.c.payload.cast(Text).contains("token="))
                )
            assert left == 0
