"""Request and response bodies of the proposals API (the contract in API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, StrictBool, StringConstraints, field_validator

from services.proposals.domain import (
    BODY_LENGTH,
    STATEMENT_MAX_LENGTH,
    TITLE_LENGTH,
    Decision,
    Outcome,
    Status,
)
from shared.languages import Language
from shared.validation import Consent, Email, Honeypot, StrictModel, multi_line, single_line

Slug = single_line(80)
DistrictSlug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
Title = single_line(TITLE_LENGTH[1], TITLE_LENGTH[0])
Body = multi_line(BODY_LENGTH[1], BODY_LENGTH[0])
Statement = multi_line(STATEMENT_MAX_LENGTH)
AuthorName = single_line(100)
Token = Annotated[str, StringConstraints(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]


class ProposalRequest(StrictModel):
    working_group_id: Slug  # type: ignore[valid-type]
    district_id: Slug | None = None  # type: ignore[valid-type]
    title: Title  # type: ignore[valid-type]
    body: Body  # type: ignore[valid-type]
    language: Language = "de"
    author_name: AuthorName | None = None  # type: ignore[valid-type]
    author_email: Email | None = None
    privacy_consent: Consent
    website: Honeypot = None


class ProposalAccepted(BaseModel):
    id: UUID
    status: Literal["submitted"] = "submitted"


class WorkingGroupRef(BaseModel):
    id: str
    title: str


class DistrictRef(BaseModel):
    id: str
    name: str


class MeasureRef(BaseModel):
    """A measure a proposal led to (on the proposal's pages)."""

    id: UUID
    title: str
    status: str
    decision: str | None
    url: str


class ProposalPublic(BaseModel):
    """A published proposal as anyone sees it: no author, no internal note."""

    id: UUID
    working_group: WorkingGroupRef
    district: DistrictRef | None
    title: str
    body: str
    language: str
    status: Status
    public_statement: str | None
    # How many proposals saying the same were merged into this one.
    merged_duplicates: int
    outcome: Outcome | None
    outcome_statement: str | None
    published_at: datetime | None
    outcome_at: datetime | None
    # The measures it led to (on a single proposal; empty in lists).
    measures: list[MeasureRef] = []


class ProposalPage(BaseModel):
    items: list[ProposalPublic]
    next_cursor: str | None


class AuthorView(BaseModel):
    """What the author sees behind their private link."""

    id: UUID
    working_group: WorkingGroupRef
    district: DistrictRef | None
    title: str
    body: str
    language: str
    status: Status
    public_statement: str | None
    duplicate_of: UUID | None
    outcome: Outcome | None
    outcome_statement: str | None
    can_edit: bool
    can_withdraw: bool
    public_url: str | None
    submitted_at: datetime
    # The measures it led to.
    measures: list[MeasureRef] = []


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    subject: str | None
    action: str
    from_status: str | None
    to_status: str
    version: int
    public_statement: str | None
    internal_note: str | None
    details: dict


class ModerationView(BaseModel):
    id: UUID
    version: int
    revision: int
    working_group: WorkingGroupRef
    district: DistrictRef | None
    title: str
    body: str
    language: str
    status: Status
    public_statement: str | None
    duplicate_of: UUID | None
    merged_duplicates: int
    outcome: Outcome | None
    outcome_statement: str | None
    author_name: str | None
    # Whether the author left an address (and so is mailed about decisions); the address itself is not shown.
    author_has_email: bool
    created_at: datetime
    submitted_at: datetime
    history: list[HistoryEntry]


class QueueItem(BaseModel):
    id: UUID
    version: int
    working_group: WorkingGroupRef
    district: DistrictRef | None
    title: str
    status: Status
    revision: int
    submitted_at: datetime


class QueuePage(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None


class QueueCount(BaseModel):
    status: Status
    working_group_id: str
    district_id: str | None
    count: int
    oldest_submitted_at: datetime


class QueueCounts(BaseModel):
    counts: list[QueueCount]
    waiting: int
    oldest_waiting_since: datetime | None
    oldest_waiting_age_seconds: int | None


class DecisionRequest(StrictModel):
    decision: Decision
    public_statement: Statement | None = None  # type: ignore[valid-type]
    internal_note: Statement | None = None  # type: ignore[valid-type]
    duplicate_of: UUID | None = None


class OutcomeRequest(StrictModel):
    outcome: Outcome
    public_statement: Statement | None = None  # type: ignore[valid-type]
    internal_note: Statement | None = None  # type: ignore[valid-type]


class TokenRequest(StrictModel):
    token: Token


class AuthorEdit(StrictModel):
    token: Token
    title: Title  # type: ignore[valid-type]
    body: Body  # type: ignore[valid-type]
    district_id: Slug | None = None  # type: ignore[valid-type]


class DistrictOut(BaseModel):
    id: str
    name: str


class DistrictAdminOut(BaseModel):
    id: str
    number: str | None
    name: str
    kind: str | None
    active: bool


class DistrictCreate(StrictModel):
    id: DistrictSlug
    name: single_line(200)  # type: ignore[valid-type]
    number: single_line(10) | None = None  # type: ignore[valid-type]
    kind: single_line(50) | None = None  # type: ignore[valid-type]


class DistrictChange(StrictModel):
    name: single_line(200) | None = None  # type: ignore[valid-type]
    number: single_line(10) | None = None  # type: ignore[valid-type]
    kind: single_line(50) | None = None  # type: ignore[valid-type]
    # false retires the district: it keeps its proposals and is hidden from new ones.
    active: StrictBool | None = None

    @field_validator("name", "active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Leave a field out to keep it; null would blank a required column (found by the fuzz run).
        if value is None:
            raise ValueError("may be left out, but not null")
        return value
