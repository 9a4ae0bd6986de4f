"""Sample events for template previews and golden tests: one per template, built from the contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.notification.domain import FINAL_MAIL_TEMPLATE, final_mail_context, intents_for, template_name
from shared import events as ev
from shared.i18n import BERLIN

_REG = uuid.UUID("00000000-0000-4000-8000-000000000001")
_PROPOSAL = uuid.UUID("00000000-0000-4000-8000-000000000002")

# Registered people have proven their address once they confirmed; a proposal's author never has.
_recipient = ev.Recipient(
    email="ayse.yilmaz@example.org", name="Ayşe Yılmaz", language="de", address_proven=True
)
_unproven = _recipient.model_copy(update={"address_proven": False})
_wg = ev.WorkingGroupInfo(id="sprachfoerderung", title="Sprachförderung")
_meetings = [
    ev.MeetingInfo(
        number=1,
        starts_at=datetime(2019, 3, 6, 18, tzinfo=BERLIN),
        venue="Berufsbildende Schule I (blauer Salon)",
        address="Kaiserslautern",
        sequence=0,
    ),
    ev.MeetingInfo(number=2, starts_at=None),
]
_links = ev.SelfServiceLinks(
    confirm_url="http://localhost:8001/v1/registrations/confirm?token=SAMPLE",
    status_url="http://localhost:8001/v1/registrations/me?token=SAMPLE",
    cancel_url="http://localhost:8001/v1/registrations/cancel?token=SAMPLE",
)
_reg = {
    "registration_id": _REG,
    "recipient": _recipient,
    "working_group": _wg,
    "meetings": _meetings,
    "participant_type": "resident",
    "links": _links,
}
_participant = ev.Participant(registration_id=_REG, recipient=_recipient, links=_links)
_proposal = {
    "proposal_id": _PROPOSAL,
    "title": "Sprachcafé im Stadtteiltreff",
    "working_group": _wg,
    "district": ev.DistrictInfo(id="innenstadt-ost", name="Innenstadt Ost"),
    "author": _unproven,
    "public_url": "http://localhost:8003/v1/proposals/00000000-0000-4000-8000-000000000002",
    "status_url": "http://localhost:8003/v1/proposals/mine?token=SAMPLE",
}
_statement = "Vielen Dank. Der Arbeitskreis greift den Vorschlag auf."

SAMPLE_EVENTS: list[ev.IntegrationEvent] = [
    ev.RegistrationSubmitted(**{**_reg, "recipient": _unproven}),
    ev.RegistrationResubmitted(**_reg, status="waitlisted", waitlist_position=3),
    ev.RegistrationConfirmed(**_reg, check_in_code="K7M2-9QXD"),
    ev.RegistrationWaitlisted(**_reg, waitlist_position=4),
    ev.RegistrationPromoted(**_reg, check_in_code="K7M2-9QXD"),
    ev.RegistrationCancelled(**_reg),
    ev.RegistrationExpired(**{**_reg, "recipient": _unproven}),
    ev.MeetingRescheduled(
        working_group=_wg,
        meeting=_meetings[0].model_copy(
            update={"sequence": 1, "starts_at": datetime(2019, 3, 13, 18, tzinfo=BERLIN)}
        ),
        participants=[_participant],
        previous=_meetings[0],
    ),
    ev.MeetingCancelled(
        working_group=_wg,
        meeting=_meetings[0].model_copy(update={"sequence": 2, "cancelled": True}),
        participants=[_participant],
    ),
    ev.MeetingReminderDue(working_group=_wg, meeting=_meetings[0], participants=[_participant]),
    ev.MeetingMinutesPublished(
        working_group=_wg,
        meeting=_meetings[0],
        participants=[_participant],
        minutes_url="http://localhost:8001/v1/working-groups/sprachfoerderung/meetings/1/minutes",
        minutes_version=1,
    ),
    ev.ProposalSubmitted(**{**_proposal, "public_url": None}),
    ev.ProposalPublished(**_proposal, public_statement=_statement),
    ev.ProposalRejected(
        **_proposal, public_statement="Der Vorschlag betrifft nicht die Stadt Kaiserslautern."
    ),
    ev.ProposalChangesRequested(
        **_proposal,
        public_statement="Bitte nennen Sie den Ort genauer.",
        edit_url="http://localhost:8003/v1/proposals/edit?token=SAMPLE",
    ),
    ev.ProposalMarkedDuplicate(
        **_proposal,
        public_statement="Ein gleicher Vorschlag liegt schon vor.",
        duplicate_of=uuid.UUID("00000000-0000-4000-8000-000000000003"),
        duplicate_of_title="Sprachcafé für alle",
        duplicate_of_url="http://localhost:8003/v1/proposals/00000000-0000-4000-8000-000000000003",
    ),
    ev.ProposalOutcomeDecided(**_proposal, outcome="partially_adopted", public_statement=_statement),
    ev.ProposalWithdrawn(**{**_proposal, "public_url": None}),
    ev.PrivacyErasureRequestSubmitted(
        recipient=_recipient.model_copy(update={"name": ""}),
        confirm_url="http://localhost:8001/v1/privacy/erasure-requests/confirm?token=SAMPLE",
    ),
]
_REQUEST = uuid.UUID("00000000-0000-4000-8000-000000000004")
# Mails recorded by a use case rather than derived from their event (the last mail of an erasure).
HELD_SAMPLES: dict[str, dict[str, Any]] = {FINAL_MAIL_TEMPLATE: final_mail_context(_REQUEST, "de")}


def sample_context(template: str) -> dict[str, Any] | None:
    if template in HELD_SAMPLES:
        return HELD_SAMPLES[template]
    for event in SAMPLE_EVENTS:
        if template_name(event.event_type) == template:
            return intents_for(event)[0].context
    return None


def templates() -> list[str]:
    return [template_name(e.event_type) for e in SAMPLE_EVENTS] + list(HELD_SAMPLES)
