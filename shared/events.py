"""The event catalog: every integration event, its routing key and its version, in one place.

An event is a small, immutable pydantic model. Its identity (``message_id``), type, time and correlation id
travel in the AMQP properties, so the body is only the event's facts. Events carry the state a consumer
needs to act without calling back (event-carried state transfer): the notification service gets the
recipient's address, name and language, the working group's title and the meeting dates.

Consumers ignore fields they do not know (``extra="ignore"``), so a producer may add fields without a new
version; renaming or removing one needs a new version and a period in which both are published.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.languages import Language

ParticipantType = Literal["resident", "expert", "organization"]
RegistrationStatus = Literal["pending_confirmation", "confirmed", "waitlisted", "cancelled", "expired"]


class IntegrationEvent(BaseModel):
    """Base of every event. Subclasses set ``event_type`` (the routing key) and ``version``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    version: ClassVar[int] = 1


CATALOG: dict[str, type[IntegrationEvent]] = {}


def _register(cls: type[IntegrationEvent]) -> type[IntegrationEvent]:
    if cls.event_type in CATALOG:
        raise ValueError(f"event type {cls.event_type} registered twice")
    CATALOG[cls.event_type] = cls
    return cls


def event_class(event_type: str) -> type[IntegrationEvent] | None:
    return CATALOG.get(event_type)


# --- value objects carried inside events ---------------------------------------------------------------


class Recipient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    email: str
    name: str
    language: Language = "de"
    # Whether the person showed that the mailbox is theirs (confirmed by the link in a mail, or acted with
    # a mailed token). Until then, anyone may have typed the address: a mail to it carries no text that
    # person typed (no name, no title), so the city's relay cannot be made to carry a stranger's words.
    address_proven: bool = False


class MeetingInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    number: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    venue: str = ""
    address: str = ""
    # Raised on every change, so calendar entries can be updated (iCalendar SEQUENCE).
    sequence: int = 0
    cancelled: bool = False


class WorkingGroupInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    title: str


class SelfServiceLinks(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    confirm_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    # Reminders only: the one-click unsubscribe (RFC 8058) that stops further reminders.
    unsubscribe_url: str | None = None


class Participant(BaseModel):
    """A confirmed participant, as carried in meeting-wide events."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    registration_id: UUID
    recipient: Recipient
    links: SelfServiceLinks = SelfServiceLinks()


# --- registration ------------------------------------------------------------------------------------


class _RegistrationEvent(IntegrationEvent):
    registration_id: UUID
    recipient: Recipient
    working_group: WorkingGroupInfo
    meetings: list[MeetingInfo]
    participant_type: ParticipantType = "resident"
    links: SelfServiceLinks = SelfServiceLinks()
    # The short code shown at the meeting's door (and as a QR), e.g. "K7M2-9QXD" (confirmations, promotions).
    check_in_code: str | None = None


@_register
class RegistrationSubmitted(_RegistrationEvent):
    """A person registered and must confirm their address (double opt-in)."""

    event_type: ClassVar[str] = "registration.submitted"


@_register
class RegistrationResubmitted(_RegistrationEvent):
    """Someone registered again with an address already active in the working group; nothing new was
    created. The mail tells the person their existing status (the API answers as for a first time)."""

    event_type: ClassVar[str] = "registration.resubmitted"
    status: RegistrationStatus
    waitlist_position: int | None = None


@_register
class RegistrationConfirmed(_RegistrationEvent):
    event_type: ClassVar[str] = "registration.confirmed"


@_register
class RegistrationWaitlisted(_RegistrationEvent):
    event_type: ClassVar[str] = "registration.waitlisted"
    waitlist_position: int


@_register
class RegistrationPromoted(_RegistrationEvent):
    """A seat became free (cancellation, more capacity) and went to this person from the waitlist."""

    event_type: ClassVar[str] = "registration.promoted"


@_register
class RegistrationCancelled(_RegistrationEvent):
    event_type: ClassVar[str] = "registration.cancelled"
    # The status before the cancellation: a confirmed person's calendar entries are cancelled too.
    previous_status: RegistrationStatus | None = None


@_register
class RegistrationExpired(_RegistrationEvent):
    """Not confirmed in time; the personal data is deleted after this event is published."""

    event_type: ClassVar[str] = "registration.expired"


# --- meetings and the catalog -------------------------------------------------------------------------


class _MeetingEvent(IntegrationEvent):
    working_group: WorkingGroupInfo
    meeting: MeetingInfo
    participants: list[Participant]


@_register
class MeetingRescheduled(_MeetingEvent):
    event_type: ClassVar[str] = "meeting.rescheduled"
    previous: MeetingInfo | None = None


@_register
class MeetingCancelled(_MeetingEvent):
    event_type: ClassVar[str] = "meeting.cancelled"


@_register
class MeetingReminderDue(_MeetingEvent):
    event_type: ClassVar[str] = "meeting.reminder_due"


@_register
class AttendanceCounted(IntegrationEvent):
    """The counts of one meeting after every check-in and walk-in (no one's name or address): the proposals
    service keeps them for open data. Published with the newest counts each time; a consumer keeps the
    highest ``revision``."""

    event_type: ClassVar[str] = "meeting.attendance_counted"
    working_group: WorkingGroupInfo
    meeting: MeetingInfo
    registered: int
    present: int
    no_show: int
    walk_ins: int
    # Present people (registered and walk-ins) per language of the process ("de", "tr", ...).
    by_language: dict[str, int] = {}
    revision: int


@_register
class MeetingMinutesPublished(_MeetingEvent):
    """A version of a meeting's minutes was published: every attendee with an address is told, in their
    language, where to read them (the minutes stay in the language they were written in). A correction is
    a new version and is told again."""

    event_type: ClassVar[str] = "meeting.minutes_published"
    minutes_url: str
    minutes_version: int
    correction: bool = False


class _WorkingGroupEvent(IntegrationEvent):
    id: str
    title: str
    meetings: list[MeetingInfo]
    # The registration service's catalog version, raised by every change: a read model keeps the highest
    # (AMQP timestamps have whole-second resolution and cannot order two changes in one second).
    catalog_version: int = 0


@_register
class WorkingGroupPublished(_WorkingGroupEvent):
    event_type: ClassVar[str] = "working_group.published"


@_register
class WorkingGroupChanged(_WorkingGroupEvent):
    event_type: ClassVar[str] = "working_group.changed"


# --- proposals ---------------------------------------------------------------------------------------


class DistrictInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    name: str


class _ProposalEvent(IntegrationEvent):
    proposal_id: UUID
    title: str
    working_group: WorkingGroupInfo
    district: DistrictInfo | None = None
    # None when the author stayed anonymous: nobody is owed a mail then.
    author: Recipient | None = None
    # The published proposal's public page (only once it is published).
    public_url: str | None = None
    # The author's private link: follow the proposal, edit it when asked, withdraw it.
    status_url: str | None = None
    # Raised each time the author sends an edited text after changes were requested.
    revision: int = 1


@_register
class ProposalSubmitted(_ProposalEvent):
    event_type: ClassVar[str] = "proposal.submitted"


@_register
class ProposalPublished(_ProposalEvent):
    event_type: ClassVar[str] = "proposal.published"
    public_statement: str | None = None


@_register
class ProposalRejected(_ProposalEvent):
    event_type: ClassVar[str] = "proposal.rejected"
    public_statement: str


@_register
class ProposalChangesRequested(_ProposalEvent):
    event_type: ClassVar[str] = "proposal.changes_requested"
    public_statement: str
    edit_url: str


@_register
class ProposalMarkedDuplicate(_ProposalEvent):
    event_type: ClassVar[str] = "proposal.marked_duplicate"
    public_statement: str
    duplicate_of: UUID
    duplicate_of_title: str = ""
    duplicate_of_url: str | None = None


@_register
class ProposalWithdrawn(_ProposalEvent):
    """The author took the proposal back before a decision."""

    event_type: ClassVar[str] = "proposal.withdrawn"


@_register
class ProposalOutcomeDecided(_ProposalEvent):
    event_type: ClassVar[str] = "proposal.outcome_decided"
    outcome: Literal["adopted", "partially_adopted", "not_adopted"]
    public_statement: str


# --- privacy ---------------------------------------------------------------------------------------


@_register
class PrivacyErasureRequestSubmitted(IntegrationEvent):
    """Someone asked for the erasure of an address (Art. 17): the mail with the verification link.
    Sent on a public POST, so it names nobody."""

    event_type: ClassVar[str] = "privacy.erasure_request_submitted"
    recipient: Recipient
    confirm_url: str
    # How long the link works (REGISTRATION_ERASURE_LINK_HOURS), for the mail to say so.
    valid_hours: int = 24


@_register
class PrivacyErasureRequested(IntegrationEvent):
    """The address was proven (or an admin started the erasure for a request by letter): every service
    erases or anonymises what it holds about ``email`` (any letter case) and answers
    ``privacy.erasure_completed``."""

    event_type: ClassVar[str] = "privacy.erasure_requested"
    request_id: UUID
    email: str
    # The requester's language, for the last mail (the notification service keeps it until then).
    language: Language = "de"


@_register
class PrivacyErasureCompleted(IntegrationEvent):
    """One service's answer: it holds nothing more about the address (``records_erased`` rows)."""

    event_type: ClassVar[str] = "privacy.erasure_completed"
    request_id: UUID
    service: str
    records_erased: int


@_register
class PrivacyErasureFinished(IntegrationEvent):
    """All services answered: the requester gets a last mail. It carries no address; the notification
    service kept the mail ready (held) since ``privacy.erasure_requested``."""

    event_type: ClassVar[str] = "privacy.erasure_finished"
    request_id: UUID


# --- mail ------------------------------------------------------------------------------------------


@_register
class MailBounced(IntegrationEvent):
    """A mail failed for good (a bounce with a 5.x.x status, or the relay refused the recipient): the
    notification service put the address on its suppression list, and no further mail goes to it. It carries
    no address; ``registration_id`` when the mail was about a registration (staff see "address bounced")."""

    event_type: ClassVar[str] = "mail.bounced"
    delivery_id: UUID
    registration_id: UUID | None = None
    template: str
    # The enhanced status code (RFC 3463), e.g. "5.1.1", and the receiving system's diagnostic without
    # any address in it.
    status: str
    diagnostic: str = ""
    # True when the relay refused the recipient while sending (RCPT), False for a bounce mail received later.
    synchronous: bool = False


# The services that take part in an erasure; the request is complete when each has answered.
ERASURE_SERVICES: tuple[str, ...] = ("registration", "notification", "proposals")
