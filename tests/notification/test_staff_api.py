"""What staff ask the notification service: did this person get our mail? What does the mail look like?"""

from __future__ import annotations

import uuid

from services.notification.app import create_app
from shared.auth import mint_token
from shared.events import Recipient, RegistrationSubmitted, SelfServiceLinks, WorkingGroupInfo
from tests.conftest import running, unique_email
from tests.support.events import publish_event as publish
from tests.support.staff import auth
from tests.support.wait import eventually


async def test_the_delivery_log_answers_did_this_person_get_our_mail(notification_settings, smtp):
    email = unique_email("log")
    event = RegistrationSubmitted(
        registration_id=uuid.uuid4(),
        recipient=Recipient(email=email, name="Маргарита Иванова", language="ru"),
        working_group=WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung"),
        meetings=[],
        links=SelfServiceLinks(confirm_url="http://forms.test/v1/registrations/confirm?token=abc"),
    )
    async with running(create_app(notification_settings)) as client:
        event_id = await publish(notification_settings.amqp_url, event)
        await smtp.wait_for(email)
        staff = auth(notification_settings, "staff")

        async def sent_rows() -> list:
            rows = (await client.get("/v1/deliveries", params={"recipient": email}, headers=staff)).json()
            return rows if rows and rows[0]["status"] == "sent" else []

        rows = await eventually(sent_rows, "the delivery log to show the mail as sent")
        assert len(rows) == 1
        row = rows[0]
        assert row["status"] == "sent" and row["event_id"] == event_id and row["language"] == "ru"
        assert row["template"] == "registration_submitted" and row["attempts"] == 1
        assert row["message_id"] == str(smtp.handler.to(email)[0].message["Message-ID"])
        by_event = (await client.get("/v1/deliveries", params={"event_id": event_id}, headers=staff)).json()
        assert [r["id"] for r in by_event] == [row["id"]]
        sent = (
            await client.get("/v1/deliveries", params={"status": "sent", "limit": 1000}, headers=staff)
        ).json()
        assert row["id"] in [r["id"] for r in sent]
        assert (
            await client.get("/v1/deliveries", params={"status": "bogus"}, headers=staff)
        ).status_code == 422
        assert (await client.get("/v1/deliveries")).status_code == 401


async def test_template_preview_for_staff(notification_settings):
    async with running(create_app(notification_settings)) as client:
        staff = auth(notification_settings, "staff")
        response = await client.get(
            "/v1/templates/registration_confirmed/preview", params={"language": "ar"}, headers=staff
        )
        assert response.status_code == 200
        preview = response.json()
        assert preview["language"] == "ar" and preview["subject"]
        assert 'dir="rtl"' in preview["html"] and preview["text"]
        assert (await client.get("/v1/templates/nope/preview", headers=staff)).status_code == 404
        bad_language = await client.get(
            "/v1/templates/registration_confirmed/preview", params={"language": "xx"}, headers=staff
        )
        assert bad_language.status_code == 422
        moderator_only = auth(notification_settings, "moderator")
        assert (
            await client.get("/v1/templates/registration_confirmed/preview", headers=moderator_only)
        ).status_code == 200
        assert (
            await client.get(
                "/v1/templates/registration_confirmed/preview",
                headers={"Authorization": "Bearer " + mint_token(notification_settings, "x", [])},
            )
        ).status_code == 403


async def test_the_delivery_log_filter_matches_the_address_exactly(notification_settings, smtp):
    """``a_b@…`` finds a_b's mail only, not ``axb@…`` (no LIKE pattern), in any letter case."""
    domain = f"x{uuid.uuid4().hex[:8]}.example.org"
    wanted, neighbour = f"a_b@{domain}", f"axb@{domain}"
    async with running(create_app(notification_settings)) as client:
        for email in (wanted, neighbour):
            await publish(
                notification_settings.amqp_url,
                RegistrationSubmitted(
                    registration_id=uuid.uuid4(),
                    recipient=Recipient(email=email, name="", language="de"),
                    working_group=WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung"),
                    meetings=[],
                ),
            )
            await smtp.wait_for(email)
        staff = auth(notification_settings, "staff")
        for query in (wanted, f" {wanted.upper()} "):
            rows = (await client.get("/v1/deliveries", params={"recipient": query}, headers=staff)).json()
            assert [r["recipient"] for r in rows] == [wanted]
        found = (
            await client.get("/v1/deliveries", params={"recipient": f"a%@{domain}"}, headers=staff)
        ).json()
        assert found == []
