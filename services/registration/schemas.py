"""Request and response bodies of the registration API (the contract in API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

from shared.events import ParticipantType
from shared.languages import Language
from shared.validation import Consent, Email, Honeypot, StrictModel, multi_line, single_line

Name = single_line(200)
Slug = single_line(80)
ShortText = single_line(200)
LongText = multi_line(2000)
Token = single_line(200)


class RegistrationRequest(StrictModel):
    working_group_id: Slug  # type: ignore[valid-type]
    name: Name  # type: ignore[valid-type]
    email: Email
    language: Language = "de"
    participant_type: ParticipantType
    organization: ShortText | None = None  # type: ignore[valid-type]
    district: ShortText | None = None  # type: ignore[valid-type]
    accessibility_needs: LongText | None = None  # type: ignore[valid-type]
    interpretation_language: ShortText | None = None  # type: ignore[valid-type]
    privacy_consent: Consent
    website: Honeypot = None


class TokenRequest(StrictModel):
    token: Token  # type: ignore[valid-type]


class RegistrationAccepted(BaseModel):
    id: UUID
    status: Literal["pending_confirmation"] = "pending_confirmation"


class RegistrationState(BaseModel):
    id: UUID | None = None  # absent when a revoked (cancelled) link is used: it tells nothing more
    status: str
    waitlist_position: int | None = None


class MeetingOut(BaseModel):
    number: int
    starts_at: datetime | None
    ends_at: datetime | None
    venue: str
    address: str
    cancelled: bool = False


class WorkingGroupOut(BaseModel):
    id: str
    title: str
    capacity: int
    confirmed: int
    seats_left: int
    waitlisted: int
    expert_reserved: int = 0
    meetings: list[MeetingOut]


class WorkingGroupChange(StrictModel):
    capacity: int | None = Field(default=None, ge=0, le=10_000)
    expert_reserved: int | None = Field(default=None, ge=0, le=10_000)


class MeetingChange(StrictModel):
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    venue: ShortText | None = None  # type: ignore[valid-type]
    address: ShortText | None = None  # type: ignore[valid-type]
    cancelled: bool | None = None
