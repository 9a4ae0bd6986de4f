"""Self-service tokens: they end after the working group's last meeting; cancelling rotates them (the
old link says "cancelled" and nothing more); the delivery log keeps no working link once a mail is sent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from services.notification.app import create_app as create_notification_app
from services.notification.models import deliveries
from services.registration.models import meetings, registrations
from shared.events import Recipient, RegistrationSubmitted, SelfServiceLinks, WorkingGroupInfo
from shared.tokens import hash_token
from tests.conftest import running, unique_email
from tests.registration.support import latest_token, register
from tests.support.events import publish_event
from tests.support.wait import eventually


async def test_cancelling_rotates_the_token_and_the_old_link_says_only_cancelled(api, make_working_group):
    wg = await make_working_group(api.runtime)
    registration_id, email = await register(api, wg, accessibility_needs="Rollstuhl")
    token = await latest_token(api.runtime, registration_id)
    assert (await api.post("/v1/registrations/confirm", json={"token": token})).json()[
        "status"
    ] == "confirmed"
    me = (await api.get("/v1/registrations/me", params={"token": token})).json()
    assert me["email"] == email
    assert (await api.post("/v1/registrations/cancel", json={"token": token})).json()["status"] == "cancelled"

    assert (await api.get("/v1/registrations/me", params={"token": token})).json() == {"status": "cancelled"}
    assert (await api.post("/v1/registrations/confirm", json={"token": token})).json() == {
        "status": "cancelled"
    }
    assert (await api.post("/v1/registrations/cancel", json={"token": token})).json() == {
        "status": "cancelled"
    }
    page = await api.get("/v1/registrations/confirm", params={"token": token})
    assert page.status_code == 200 and email not in page.text and "Ayşe" not in page.text
    async with api.runtime.transaction() as session:
        row = (
            await session.execute(
                select(registrations).where(registrations.c.id == uuid.UUID(registration_id))
            )
        ).one()
    assert row.token_hash != hash_token(token) and row.revoked_token_hash == hash_token(token)


async def test_a_link_ends_after_the_working_groups_last_meeting(api, make_working_group):
    wg = await make_working_group(api.runtime, starts_at=datetime.now(UTC) + timedelta(days=10))
    registration_id, _ = await register(api, wg)
    token = await latest_token(api.runtime, registration_id)
    assert (await api.get("/v1/registrations/me", params={"token": token})).status_code == 200
    past = datetime.now(UTC) - timedelta(days=3)
    async with api.runtime.transaction() as session:
        await session.execute(
            update(meetings).where(meetings.c.working_group_id == wg).values(starts_at=past)
        )
    api.runtime.catalog.invalidate(wg)
    assert (await api.get("/v1/registrations/me", params={"token": token})).status_code == 404
    assert (await api.post("/v1/registrations/confirm", json={"token": token})).status_code == 404
    assert (await api.post("/v1/registrations/cancel", json={"token": token})).status_code == 404
    assert (await api.get("/v1/registrations/cancel", params={"token": token})).status_code == 404


async def test_the_delivery_log_keeps_no_link_once_the_mail_is_sent(notification_settings, smtp):
    email = unique_email("links")
    event = RegistrationSubmitted(
        registration_id=uuid.uuid4(),
        recipient=Recipient(email=email, name="", language="de"),
        working_group=WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung"),
        meetings=[],
        links=SelfServiceLinks(
            confirm_url="http://forms.test/v1/registrations/confirm?token=secret-token-123"
        ),
    )
    app = create_notification_app(notification_settings)
    async with running(app):
        await publish_event(notification_settings.amqp_url, event)
        await smtp.wait_for(email)
        assert "secret-token-123" in str(smtp.handler.to(email)[0].message)  # the mail had it

        async def sent_row():
            async with app.state.runtime.transaction() as conn:
                row = (
                    await conn.execute(select(deliveries).where(deliveries.c.recipient_email == email))
                ).one()
            return row if row.status == "sent" else None

        row = await eventually(sent_row, "the delivery to be sent")
        assert "links" not in row.context and "secret-token-123" not in str(row._mapping)
