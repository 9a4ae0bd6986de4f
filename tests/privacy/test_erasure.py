"""Erasure on request (Art. 17) across the three services, in-process against real Postgres, RabbitMQ
and SMTP: afterwards the address, in any letter case, is in no column of any table of any schema."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from services.notification.app import create_app as notification_app
from services.notification.models import deliveries
from services.proposals.app import create_app as proposals_app
from services.proposals.models import working_groups as proposal_working_groups
from services.registration.app import create_app as registration_app
from services.registration.models import erasure_requests, registrations
from tests.conftest import registration_body, running, unique_email
from tests.proposals.conftest import proposal_body
from tests.support.catalog import create_working_group
from tests.support.dbscan import columns_containing
from tests.support.wait import eventually


def link_token(mails, path: str) -> str:
    """The token of the newest of ``mails`` with a link to ``path``."""
    for mail in reversed(mails):
        found = re.search(
            re.escape(path) + r"\?token=([A-Za-z0-9_\-]+)", mail.message.get_body(("plain",)).get_content()
        )
        if found:
            return found.group(1)
    raise AssertionError(f"no mail with a link to {path}")


async def test_erasure_across_services_with_one_service_down_leaves_the_address_nowhere(
    infra, registration_settings, notification_settings, proposals_settings, smtp
):
    reg_app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    prop_settings = proposals_settings.model_copy(update={"rate_limit_per_minute": 0})
    email = unique_email("Erase.Me")  # mixed case as typed
    other = unique_email("waiting")

    notif_app = notification_app(notification_settings)
    async with running(reg_app) as api, running(notif_app):
        wg = await create_working_group(
            reg_app.state.runtime, capacity=1, starts_at=datetime.now(UTC) + timedelta(days=30)
        )

        # --- what the three services hold about the address ------------------------------------------
        prop_app = proposals_app(prop_settings)
        async with running(prop_app) as proposals:
            async with prop_app.state.runtime.transaction() as session:
                await session.execute(insert(proposal_working_groups).values(id=wg, title="Erasure (Test)"))
            answer = await proposals.post(
                "/v1/proposals", json=proposal_body(wg, author_name="Zu Löschen", author_email=email.upper())
            )
            assert answer.status_code == 202
            await smtp.wait_for(email.upper())  # the receipt: the delivery log holds the address now

        for address in (email, other):
            body = registration_body(working_group_id=wg, email=address, name="Erika Löschmich")
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
        for address in (email, other):
            mails = await smtp.wait_for(address, count=2 if address == email else 1)
            token = link_token(mails, "/v1/registrations/confirm")
            assert (await api.post("/v1/registrations/confirm", json={"token": token})).status_code == 200
        await smtp.wait_for(email, count=3)  # receipt, opt-in, confirmed (the seat)
        await smtp.wait_for(other, count=2)  # waitlisted

        # --- the request, while the proposals service is down ------------------------------------------
        answer = await api.post(
            "/v1/privacy/erasure-requests", json={"email": email.lower(), "language": "en"}
        )
        assert answer.status_code == 202 and answer.json() == {"status": "pending_verification"}
        verification = (await smtp.wait_for(email.lower(), count=4))[3]
        assert verification.message["Content-Language"] == "en"
        token = link_token([verification], "/v1/privacy/erasure-requests/confirm")

        page = await api.get("/v1/privacy/erasure-requests/confirm", params={"token": token})
        assert page.status_code == 200 and "<form" in page.text and 'name="token"' in page.text
        async with reg_app.state.runtime.transaction() as session:
            statuses = (await session.execute(select(erasure_requests.c.status))).scalars().all()
            seat = (
                await session.execute(select(registrations.c.status).where(registrations.c.email == email))
            ).scalar_one()
        assert "erasing" not in statuses and seat == "confirmed"  # the page changed nothing

        started = await api.post("/v1/privacy/erasure-requests/confirm", json={"token": token})
        assert started.status_code == 202
        request_id = started.json()["request_id"]
        assert started.json()["status"] == "erasing"

        async def state() -> dict:
            answer = await api.get(f"/v1/privacy/erasure-requests/{request_id}", params={"token": token})
            assert answer.status_code == 200
            return answer.json()

        async def two_of_three() -> bool:
            services = (await state())["services"]
            return services == {
                "registration": "completed",
                "notification": "completed",
                "proposals": "pending",
            }

        await eventually(two_of_three, "registration and notification to answer", timeout=30)
        assert (await state())["status"] == "erasing"
        # The seat went to the waitlist at once.
        promoted = (await smtp.wait_for(other, count=3))[2]
        assert "Erika" in promoted.message.get_body(("plain",)).get_content()
        assert len(smtp.handler.to(email)) == 4  # no last mail while proposals has not answered

        # --- the proposals service comes back and answers ----------------------------------------------
        async with running(proposals_app(prop_settings)):

            async def completed() -> bool:
                return (await state())["status"] == "completed"

            await eventually(completed, "the erasure to complete", timeout=30)
            last = (await smtp.wait_for(email, count=5, timeout=30))[4]
            assert last.message["Content-Language"] == "en"
            assert "deleted" in last.message["Subject"]
            assert (await state())["services"] == dict.fromkeys(
                ("registration", "notification", "proposals"), "completed"
            )

            needles = (email, email.lower(), email.upper())

            async def nowhere() -> list[str] | bool:
                return not await columns_containing(infra, *needles)

            try:
                await eventually(nowhere, "the address to be gone from every table", timeout=20)
            except AssertionError:
                raise AssertionError(f"still found in: {await columns_containing(infra, *needles)}") from None

        # The last mail's row is there, sent, without an address; the request keeps only a hash.
        async with notif_app.state.runtime.transaction() as session:
            final = (
                await session.execute(select(deliveries).where(deliveries.c.event_id == request_id))
            ).one()
        assert (final.template, final.status, final.recipient_email) == (
            "privacy_erasure_finished",
            "sent",
            None,
        )
        async with reg_app.state.runtime.transaction() as session:
            row = (
                await session.execute(
                    select(erasure_requests).where(erasure_requests.c.id == uuid.UUID(request_id))
                )
            ).one()
        assert row.email is None and row.status == "completed" and row.email_hash
