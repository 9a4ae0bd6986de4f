"""A mail to an address nobody has proven carries no text a stranger typed.

Anyone may type anyone's address into a public form. If the city's relay then carried the name or the
title that stranger typed ("Konto gesperrt: https://evil.example/login"), it would deliver phishing under
the city's SPF/DKIM. Every kind of mail goes out here, through the real broker, the notification service
and an SMTP server, to unproven addresses with a marker in every field a person types; no marker may
appear in any header or part.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from services.notification.app import create_app as notification_app
from services.notification.config import NotificationSettings
from services.notification.domain import intents_for
from services.notification.samples import SAMPLE_EVENTS
from shared import events as ev
from tests.conftest import running, unique_email
from tests.support.events import publish_event
from tests.support.smtp import SmtpServer

MARKER = "TYPED-BY-A-STRANGER"
PHISHING = f"{MARKER} Konto gesperrt: https://evil.example/login"


def _with_markers(event: ev.IntegrationEvent, address: str) -> ev.IntegrationEvent:
    """The sample event of one mail kind, sent to ``address`` (unproven), with every typed field marked."""
    stranger = ev.Recipient(email=address, name=PHISHING, language="de", address_proven=False)
    update: dict[str, Any] = {}
    if "recipient" in type(event).model_fields:
        update["recipient"] = stranger
    if "author" in type(event).model_fields:
        update["author"] = stranger
    if "title" in type(event).model_fields:
        update["title"] = PHISHING
    if "duplicate_of_title" in type(event).model_fields:
        update["duplicate_of_title"] = PHISHING
    if "participants" in type(event).model_fields:
        update["participants"] = [
            p.model_copy(update={"recipient": stranger})
            for p in event.participants  # type: ignore[attr-defined]
        ]
    if "recipients" in type(event).model_fields:  # measures: authors and followers
        update["recipients"] = [
            r.model_copy(update={"recipient": stranger})
            for r in event.recipients  # type: ignore[attr-defined]
        ]
    return event.model_copy(update=update)


def _everything_in(message: EmailMessage) -> str:
    """Every header (decoded) and every part (decoded) of a mail, as one text."""
    texts = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if not part.is_multipart():
            texts.append(part.get_content() if part.get_content_maintype() == "text" else "")
    return "\n".join(texts)


async def test_no_mail_to_an_unproven_address_carries_typed_text(
    notification_settings: NotificationSettings, smtp: SmtpServer
) -> None:
    kinds = [event for event in SAMPLE_EVENTS if intents_for(event)]
    assert {e.event_type for e in kinds} >= {
        "registration.submitted",
        "registration.resubmitted",
        "registration.expired",
        "proposal.submitted",
        "proposal.published",
        "proposal.rejected",
        "proposal.changes_requested",
        "proposal.marked_duplicate",
        "proposal.outcome_decided",
        "proposal.withdrawn",
        "privacy.erasure_request_submitted",
    }
    addresses = {event.event_type: unique_email(event.event_type.replace(".", "-")) for event in kinds}
    async with running(notification_app(notification_settings)):
        for event in kinds:
            await publish_event(
                notification_settings.amqp_url, _with_markers(event, addresses[event.event_type])
            )
        for event_type, address in addresses.items():
            [mail] = await smtp.wait_for(address)
            content = _everything_in(mail.message)
            assert MARKER not in content and "evil.example" not in content, event_type
            assert MARKER.encode() not in mail.raw, event_type  # nor in any encoding of it
            assert mail.message["To"].addresses[0].display_name == "", event_type
            # The mail still says what it is about: its subject is there, in German.
            assert mail.message["Subject"].strip(), event_type


async def test_a_proven_address_is_greeted_by_name(
    notification_settings: NotificationSettings, smtp: SmtpServer
) -> None:
    address = unique_email("proven")
    confirmed = next(e for e in SAMPLE_EVENTS if e.event_type == "registration.confirmed")
    person = ev.Recipient(email=address, name="Ayşe Yılmaz", language="de", address_proven=True)
    async with running(notification_app(notification_settings)):
        await publish_event(
            notification_settings.amqp_url, confirmed.model_copy(update={"recipient": person})
        )
        [mail] = await smtp.wait_for(address)
    assert mail.message["To"].addresses[0].display_name == "Ayşe Yılmaz"
    assert "Ayşe Yılmaz" in _everything_in(mail.message)
