"""A cancelled seat leaves no entry behind: the resident's calendar, built from the .ics parts of their
mails in the order they arrived, ends with every meeting cancelled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.notification.app import create_app as notification_app
from services.registration.app import create_app as registration_app
from shared.tokens import token_for
from tests.conftest import registration_body, running
from tests.support.calendar import calendar_of, calendar_parts


async def test_cancelling_after_confirmation_or_promotion_cancels_the_calendar_entries(
    registration_settings, notification_settings, smtp, make_working_group
):
    settings = registration_settings.model_copy(
        update={"rate_limit_per_minute": 0, "opt_in_mails_per_hour": 0}
    )
    registration = registration_app(settings)
    async with running(registration) as api, running(notification_app(notification_settings)):
        wg = await make_working_group(
            registration.state.runtime, capacity=1, starts_at=datetime.now(UTC) + timedelta(days=40)
        )

        async def register() -> tuple[str, str]:
            body = registration_body(working_group_id=wg)
            response = await api.post("/v1/registrations", json=body)
            await smtp.wait_for(body["email"], 1)
            return body["email"], token_for(settings.token_secret, uuid.UUID(response.json()["id"]))

        async def act(action: str, token: str) -> str:
            return (await api.post(f"/v1/registrations/{action}", json={"token": token})).json()["status"]

        anna, anna_token = await register()
        ben, ben_token = await register()
        cem, cem_token = await register()
        assert await act("confirm", anna_token) == "confirmed"
        assert await act("confirm", ben_token) == "waitlisted"
        assert await act("confirm", cem_token) == "waitlisted"
        await smtp.wait_for(anna, 2)
        await smtp.wait_for(ben, 2)
        await smtp.wait_for(cem, 2)

        # Anna cancels after her confirmation: Ben moves up.
        assert await act("cancel", anna_token) == "cancelled"
        await smtp.wait_for(anna, 3)
        await smtp.wait_for(ben, 3)
        # Ben cancels after his promotion: Cem moves up.
        assert await act("cancel", ben_token) == "cancelled"
        await smtp.wait_for(ben, 4)
        await smtp.wait_for(cem, 3)

        anna_mails, ben_mails = smtp.handler.to(anna), smtp.handler.to(ben)
        for mails in (anna_mails, ben_mails):
            entries = calendar_of(mails)
            assert entries, "the confirmation or promotion carried calendar entries"
            assert {e.status for e in entries.values()} == {"CANCELLED"}
            # Same UIDs as the entries first sent, at a higher SEQUENCE.
            first = calendar_of([m for m in mails if calendar_parts(m)][:1])
            assert set(first) == set(entries)
            assert all(entries[uid].sequence > first[uid].sequence for uid in first)
        last = ben_mails[-1]
        assert [str(c["METHOD"]) for c in calendar_parts(last)] == ["CANCEL"]

        # Dora cancels straight from the waitlist: no entry ever
        # reached her, so her cancellation carries none.
        dora, dora_token = await register()
        assert await act("confirm", dora_token) == "waitlisted"
        await smtp.wait_for(dora, 2)
        assert await act("cancel", dora_token) == "cancelled"
        dora_mails = await smtp.wait_for(dora, 3)
        assert all(not calendar_parts(m) for m in dora_mails)
