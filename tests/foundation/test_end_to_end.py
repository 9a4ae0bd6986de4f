"""A registration posted to the registration service arrives as exactly one German mail."""

from __future__ import annotations

from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.registration.app import create_app as registration_app
from tests.conftest import registration_body, running
from tests.support.mail import processing_ended


async def test_registration_becomes_exactly_one_german_mail(
    registration_settings, notification_settings, proposals_settings, smtp
):
    async with (
        running(registration_app(registration_settings)) as registration,
        running(notification := notification_app(notification_settings)),
        running(proposals_app(proposals_settings)) as proposals,
    ):
        body = registration_body(name="Jürgen Müller")
        response = await registration.post("/v1/registrations", json=body)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending_confirmation"

        mails = await smtp.wait_for(body["email"])
        await processing_ended(notification)  # would a second one follow?
        assert len(smtp.handler.to(body["email"])) == 1
        mail = mails[0].message
        assert "Bitte bestätigen Sie Ihre Anmeldung" in str(mail["Subject"])
        assert "Sprachförderung" in str(mail["Subject"])
        assert mail["To"].addresses[0].addr_spec == body["email"]
        # The typed name is unproven until the address is confirmed: the opt-in mail does not show it.
        assert mail["To"].addresses[0].display_name == ""
        assert "Jürgen" not in mail.as_string()
        assert mail["Auto-Submitted"] == "auto-generated"
        text = mail.get_body(("plain",)).get_content()
        assert "http://forms.test/v1/registrations/confirm?token=" in text
        html = mail.get_body(("html",)).get_content()
        assert 'lang="de"' in html

        # The proposals service knows the catalog from events, and serves the city's districts.
        districts = (await proposals.get("/v1/districts")).json()
        assert len(districts) == 18
        assert {"id": "innenstadt-ost", "name": "Innenstadt Ost"} in districts
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await proposals.get(path)).status_code == 200
