"""A resident's whole journey across the services, read from the mails they receive."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar
from sqlalchemy import insert

from services.notification.app import create_app as notification_app
from services.registration.app import create_app as registration_app
from services.registration.models import meetings, working_groups
from shared.auth import mint_token
from tests.conftest import registration_body, running

BERLIN = ZoneInfo("Europe/Berlin")


def token_from(mail) -> str:
    text = mail.message.get_body(("plain",)).get_content()
    return re.search(r"token=([A-Za-z0-9_\-]+)", text).group(1)


async def test_register_confirm_waitlist_cancel_promote_and_reschedule_by_mail(
    registration_settings, notification_settings, smtp
):
    reg_app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(reg_app) as api, running(notification_app(notification_settings)):
        wg = f"journey-{uuid.uuid4().hex[:8]}"
        async with reg_app.state.runtime.transaction() as session:
            await session.execute(
                insert(working_groups).values(id=wg, title="Sprachförderung (Test)", capacity=1)
            )
            await session.execute(
                insert(meetings).values(
                    [
                        {
                            "working_group_id": wg,
                            "number": 1,
                            "starts_at": datetime(2019, 3, 6, 18, tzinfo=BERLIN),
                            "venue": "BBS I",
                            "address": "Kaiserslautern",
                        },
                        {"working_group_id": wg, "number": 2, "starts_at": None, "venue": "", "address": ""},
                    ]
                )
            )
        ayse = registration_body(working_group_id=wg, language="tr", name="Ayşe Yılmaz")
        oleh = registration_body(working_group_id=wg, language="uk", name="Олег Шевченко")
        for body in (ayse, oleh):
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
        ayse_token = token_from((await smtp.wait_for(ayse["email"]))[0])
        oleh_token = token_from((await smtp.wait_for(oleh["email"]))[0])

        assert (await api.post("/v1/registrations/confirm", json={"token": ayse_token})).json()[
            "status"
        ] == "confirmed"
        confirmed = (await smtp.wait_for(ayse["email"], count=2))[1].message
        assert confirmed["Content-Language"] == "tr"
        ics_parts = [p for p in confirmed.walk() if p.get_content_type() == "text/calendar"]
        assert len(ics_parts) == 1
        calendar = Calendar.from_ical(ics_parts[0].get_content())
        assert str(calendar["METHOD"]) == "PUBLISH"
        events = calendar.walk("VEVENT")
        assert len(events) == 1  # the second meeting has no date yet
        first_uid = str(events[0]["UID"])

        waitlisted = await api.post("/v1/registrations/confirm", json={"token": oleh_token})
        assert waitlisted.json()["waitlist_position"] == 1
        await smtp.wait_for(oleh["email"], count=2)

        assert (await api.post("/v1/registrations/cancel", json={"token": ayse_token})).status_code == 200
        await smtp.wait_for(ayse["email"], count=3)  # cancelled
        promoted = (await smtp.wait_for(oleh["email"], count=3))[2].message
        assert promoted["Content-Language"] == "uk"
        assert any(p.get_content_type() == "text/calendar" for p in promoted.walk())

        admin = {"Authorization": f"Bearer {mint_token(registration_settings, 'degen', ['admin'])}"}
        response = await api.patch(
            f"/v1/working-groups/{wg}/meetings/1",
            json={"starts_at": "2019-03-07T18:00:00+01:00"},
            headers=admin,
        )
        assert response.status_code == 200
        rescheduled = (await smtp.wait_for(oleh["email"], count=4))[3].message
        ics = next(p for p in rescheduled.walk() if p.get_content_type() == "text/calendar")
        event = Calendar.from_ical(ics.get_content()).walk("VEVENT")[0]
        assert int(event["SEQUENCE"]) == 1
        assert str(event["UID"]) != first_uid  # UIDs are per registration and meeting
        assert event.decoded("DTSTART").isoformat().startswith("2019-03-07T17:00")
        assert len(smtp.handler.to(ayse["email"])) == 3  # a cancelled registration is not told
