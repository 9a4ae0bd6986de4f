"""Which mails an event owes, to whom, with which template: pure functions of the event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import events as ev


@dataclass(frozen=True)
class MailIntent:
    template: str
    recipient: ev.Recipient
    context: dict[str, Any]


def template_name(event_type: str) -> str:
    return event_type.replace(".", "_")


def intents_for(event: ev.IntegrationEvent) -> list[MailIntent]:
    template = template_name(event.event_type)
    payload = event.model_dump(mode="json")
    if isinstance(event, ev._RegistrationEvent):
        return [MailIntent(template, event.recipient, payload)]
    if isinstance(event, ev._MeetingEvent):
        base = {k: v for k, v in payload.items() if k != "participants"}
        return [
            MailIntent(
                template,
                participant.recipient,
                {
                    **base,
                    "recipient": participant.recipient.model_dump(mode="json"),
                    "registration_id": str(participant.registration_id),
                    "links": participant.links.model_dump(mode="json"),
                },
            )
            for participant in event.participants
        ]
    if isinstance(event, ev.PrivacyErasureRequestSubmitted):
        return [MailIntent(template, event.recipient, payload)]
    # privacy.erasure_finished owes a mail too, but it was recorded (held) with the erasure: see privacy.py.
    if isinstance(event, ev._ProposalEvent):
        if event.author is None or not event.author.email:
            return []
        return [MailIntent(template, event.author, {**payload, "recipient": payload["author"]})]
    return []
