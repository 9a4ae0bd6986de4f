"""Reminders honour a person's wish (RFC 8058): a reminder carries List-Unsubscribe with the registration's
one-click link and List-Unsubscribe-Post; the one-click POST stops further reminders for that registration
only; confirmations and calendar updates carry no such header and still go. A link with a line break never
becomes a header."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from urllib.parse import urlsplit

from services.notification.app import create_app as notification_app
from services.notification.domain import unsubscribe_url_of
from services.notification.mail import build_message
from services.notification.rendering import RenderedMail
from services.registration import staff
from services.registration.app import create_app as registration_app
from tests.conftest import registration_body, running
from tests.e2e.test_journey import token_from
from tests.support.catalog import create_working_group
from tests.support.staff import auth

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def test_only_a_safe_link_of_a_reminder_becomes_the_header() -> None:
    links = {"links": {"unsubscribe_url": "https://forms.example/v1/registrations/unsubscribe?token=abc"}}
    assert unsubscribe_url_of("meeting_reminder_due", links) == links["links"]["unsubscribe_url"]
    for template in ("registration_confirmed", "meeting_rescheduled", "privacy_erasure_finished"):
        assert unsubscribe_url_of(template, links) is None

    def headers(url: str) -> dict[str, str]:
        message = build_message(
            rendered=RenderedMail(subject="Erinnerung", text="t", html="<p>t</p>", language="de"),
            sender=Address("Stadt", "mitwirkung", "kaiserslautern.de"),
            reply_to=None,
            recipient=Address("", "maria", "example.org"),
            message_id="<x@kaiserslautern.de>",
            date=datetime.now(UTC),
            unsubscribe_url=url,
        )
        return {k: str(v) for k, v in message.items()}

    good = headers("https://forms.example/v1/registrations/unsubscribe?token=abc")
    assert good["List-Unsubscribe"] == "<https://forms.example/v1/registrations/unsubscribe?token=abc>"
    assert good["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for evil in (
        "https://forms.example/?token=a\r\nBcc: victim@example.org",
        "https://forms.example/?token=a>, <mailto:x@evil.example",
        "javascript:alert(1)",
        "https://forms.example/ a",
    ):
        written = headers(evil)
        assert "List-Unsubscribe" not in written and "Bcc" not in written


async def test_the_one_click_unsubscribe_stops_reminders_for_that_registration_only(
    registration_settings, notification_settings, smtp
):
    settings = registration_settings.model_copy(update={"rate_limit_per_minute": 0})
    reg_app = registration_app(settings)
    async with running(reg_app) as api, running(notification_app(notification_settings)):
        runtime = reg_app.state.runtime
        wg = await create_working_group(runtime, starts_at=datetime.now(UTC) + timedelta(hours=3))
        quits, stays = (registration_body(working_group_id=wg) for _ in range(2))
        for body in (quits, stays):
            assert (await api.post("/v1/registrations", json=body)).status_code == 202
            token = token_from((await smtp.wait_for(body["email"]))[0])
            assert (await api.post("/v1/registrations/confirm", json={"token": token})).status_code == 200
            confirmed = (await smtp.wait_for(body["email"], count=2))[1].message
            assert "List-Unsubscribe" not in confirmed and "List-Unsubscribe-Post" not in confirmed

        async with runtime.transaction() as conn:
            await staff.send_due_reminders(conn, settings)
        reminder = (await smtp.wait_for(quits["email"], count=3))[2].message
        await smtp.wait_for(stays["email"], count=3)
        assert reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = re.fullmatch(r"<(https?://[^>]+)>", str(reminder["List-Unsubscribe"]).strip()).group(1)
        assert url.startswith(f"{settings.public_url}/v1/registrations/unsubscribe?token=")

        # What a mail program does on one click (RFC 8058 3.2).
        link = urlsplit(url)
        answer = await api.post(
            f"{link.path}?{link.query}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK
        )
        assert answer.status_code == 200 and answer.json() == {"reminders": False}
        again = await api.post(
            f"{link.path}?{link.query}", content="List-Unsubscribe=One-Click", headers=ONE_CLICK
        )
        assert again.status_code == 200
        unknown = await api.post("/v1/registrations/unsubscribe?token=" + "A" * 43, headers=ONE_CLICK)
        assert unknown.status_code == 404
        assert (await api.post("/v1/registrations/unsubscribe?token=<script>")).status_code == 422
        assert (await api.post("/v1/registrations/unsubscribe")).status_code == 422

        # The meeting moves: the calendar update is transactional and reaches both; the next reminder
        # reaches only the one who did not unsubscribe.
        moved = await api.patch(
            f"/v1/working-groups/{wg}/meetings/1",
            json={"starts_at": (datetime.now(UTC) + timedelta(hours=5)).isoformat()},
            headers=auth(settings, "admin"),
        )
        assert moved.status_code == 200, moved.text
        rescheduled = (await smtp.wait_for(quits["email"], count=4))[3].message
        assert "List-Unsubscribe" not in rescheduled
        await smtp.wait_for(stays["email"], count=4)
        async with runtime.transaction() as conn:
            await staff.send_due_reminders(conn, settings)
        second = (await smtp.wait_for(stays["email"], count=5))[4].message
        assert "List-Unsubscribe" in second
    assert len(smtp.handler.to(quits["email"])) == 4
