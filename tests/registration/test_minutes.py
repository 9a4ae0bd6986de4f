"""Issue 24, item 2: a meeting's minutes. Every version is kept; nothing is public before it is published;
Markdown is rendered safely; publishing mails every attendee with an address, in their language, once —
a redelivered event sends nothing more — and a published correction tells them again. Also the confirmation
mail's check-in code with its QR image (item 1). Real Postgres, RabbitMQ and SMTP."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from services.notification.app import create_app as notification_app
from services.registration.app import create_app as registration_app
from services.registration.models import outbox
from shared.events import MeetingMinutesPublished
from tests.conftest import registration_body, running, unique_email
from tests.registration.support import latest_token
from tests.support.catalog import create_working_group
from tests.support.events import publish_event
from tests.support.mail import processing_ended
from tests.support.staff import auth

UNSAFE = """# Ergebnisse

<script>alert("x")</script> <img src=x onerror=alert(1)>

- [Gut](https://www.kaiserslautern.de/integration)
- [Böse](javascript:alert(1)) und [auch](data:text/html;base64,PHNjcmlwdD4=)
"""


async def _confirmed(api, wg: str, **extra) -> tuple[str, str]:
    body = registration_body(working_group_id=wg, **extra)
    reg_id = (await api.post("/v1/registrations", json=body)).json()["id"]
    token = await latest_token(api.runtime, reg_id)
    assert (await api.post("/v1/registrations/confirm", json={"token": token})).json()[
        "status"
    ] == "confirmed"
    return reg_id, body["email"]


async def test_minutes_versions_mails_once_in_each_language_and_safe_markdown(
    registration_settings, notification_settings, smtp
):
    async with (
        running(registration := registration_app(registration_settings)) as api,
        running(notification := notification_app(notification_settings)),
    ):
        api.runtime = registration.state.runtime
        wg = await create_working_group(api.runtime)
        staff = auth(registration_settings, "staff")
        anna, anna_mail = await _confirmed(
            api, wg, name="Anna Berg", language="de", email=unique_email("anna")
        )
        oleh, oleh_mail = await _confirmed(
            api, wg, name="Oleh Koval", language="uk", email=unique_email("oleh")
        )
        _, absent_mail = await _confirmed(
            api, wg, name="Zeynep Ak", language="tr", email=unique_email("zeynep")
        )
        for reg_id in (anna, oleh):
            answer = await api.post(
                f"/v1/working-groups/{wg}/meetings/1/attendance",
                json={"registration_id": reg_id},
                headers=staff,
            )
            assert answer.status_code == 200, answer.text

        # The confirmation mail (after the one asking to confirm) carries the check-in code and its QR as a PNG image.
        confirmation = (await smtp.wait_for(anna_mail, count=2))[1].message
        code = (
            await api.get("/v1/registrations/me", params={"token": await latest_token(api.runtime, anna)})
        ).json()["check_in_code"]
        assert code in confirmation.get_body(("plain",)).get_content()
        images = [part for part in confirmation.walk() if part.get_content_type() == "image/png"]
        assert len(images) == 1 and images[0].get_payload(decode=True).startswith(b"\x89PNG")

        url = f"/v1/working-groups/{wg}/meetings/1/minutes"
        draft = await api.put(url, json={"summary_md": "Entwurf", "publish": False}, headers=staff)
        assert draft.status_code == 200 and draft.json()["version"] == 1
        assert (await api.get(url)).status_code == 404  # a draft is not public
        assert (await api.get(url, headers={"Accept": "text/html"})).status_code == 404

        published = await api.put(
            url,
            json={"summary_md": UNSAFE, "document_url": "https://example.org/protokoll.pdf", "publish": True},
            headers=staff,
        )
        assert published.status_code == 200, published.text
        assert published.json()["version"] == 2

        public = (await api.get(url)).json()
        assert public["version"] == 2 and public["versions"] == [2]
        html = public["summary_html"]
        assert "<script" not in html and "&lt;script&gt;" in html and "<img" not in html
        assert 'href="https://www.kaiserslautern.de/integration"' in html
        # Links to anything but http(s) stay text.
        assert 'href="javascript' not in html and 'href="data:' not in html and html.count("<a ") == 1

        page = await api.get(url, headers={"Accept": "text/html"}, params={"lang": "ar"})
        assert page.status_code == 200 and 'dir="rtl"' in page.text and "<script" not in page.text
        assert "https://example.org/protokoll.pdf" in page.text

        # Every attendee, in their language; nobody who did not come.
        german = (await smtp.wait_for(anna_mail, count=3))[2].message
        ukrainian = (await smtp.wait_for(oleh_mail, count=3))[2].message
        assert "Protokoll" in str(german["Subject"]) and german["Content-Language"] == "de"
        assert "Протокол" in str(ukrainian["Subject"]) and ukrainian["Content-Language"] == "uk"
        assert (
            f"{registration_settings.public_url}{url}?lang=uk" in ukrainian.get_body(("plain",)).get_content()
        )

        # A redelivered event (the same message id) sends nothing more.
        async with api.runtime.transaction() as conn:
            rows = (
                await conn.execute(
                    select(outbox.c.id, outbox.c.payload).where(
                        outbox.c.event_type == "meeting.minutes_published"
                    )
                )
            ).all()
        # Other tests' working groups publish minutes into the same outbox: this one's.
        [row] = [r for r in rows if r.payload["working_group"]["id"] == wg]
        await publish_event(
            registration_settings.amqp_url, MeetingMinutesPublished.model_validate(row.payload), str(row.id)
        )
        await processing_ended(notification)
        assert len(smtp.handler.to(anna_mail)) == 3 and len(smtp.handler.to(oleh_mail)) == 3
        assert len(smtp.handler.to(absent_mail)) == 2  # asking to confirm, and the confirmation

        # A published correction is a new version, told again; the older one stays readable.
        corrected = await api.put(url, json={"summary_md": "Berichtigt.", "publish": True}, headers=staff)
        assert corrected.json()["version"] == 3
        again = (await smtp.wait_for(anna_mail, count=4))[3].message
        assert "berichtigt" in again.get_body(("plain",)).get_content()
        assert (await api.get(url)).json()["summary_md"] == "Berichtigt."
        assert (await api.get(url, params={"version": 2})).json()["summary_md"] == UNSAFE.strip()
        assert (await api.get(url, params={"version": 1})).status_code == 404  # the draft stays unpublished
        await processing_ended(notification)
        assert len(smtp.handler.to(oleh_mail)) == 4


async def test_minutes_bad_input(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime)
    staff = auth(registration_settings, "staff")
    url = f"/v1/working-groups/{wg}/meetings/1/minutes"

    async def field(body) -> str:
        answer = await api.put(url, json=body, headers=staff)
        assert answer.status_code == 422, answer.text
        return answer.json()["errors"][0]["field"]

    assert "document_url" in await field(
        {"summary_md": "x", "document_url": "javascript:alert(1)", "publish": True}
    )
    assert "summary_md" in await field({"summary_md": "", "publish": True})
    assert "publish" in await field({"summary_md": "x"})
    assert "extra" in await field({"summary_md": "x", "publish": True, "extra": 1})
    assert (await api.put(url, json={"summary_md": "x", "publish": True})).status_code == 401
    missing = f"/v1/working-groups/{wg}/meetings/9/minutes"
    assert (
        await api.put(missing, json={"summary_md": "x", "publish": True}, headers=staff)
    ).status_code == 404
    assert (await api.get(f"/v1/working-groups/{uuid.uuid4().hex}/meetings/1/minutes")).status_code == 404
    assert (await api.get(url, params={"version": "zwei"})).status_code == 422
