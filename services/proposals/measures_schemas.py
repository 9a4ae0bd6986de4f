"""Request and response bodies of measures (API.md, "Measures")."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from services.proposals.domain import (
    MEASURE_DESCRIPTION_LENGTH,
    MEASURE_TITLE_LENGTH,
    STATEMENT_MAX_LENGTH,
    CouncilDecision,
    MeasureStatus,
    Outcome,
    ProgressStatus,
)
from services.proposals.schemas import DistrictRef, WorkingGroupRef
from shared.languages import Language
from shared.validation import Email, StrictModel, multi_line, single_line

Slug = single_line(80)
MeasureTitle = single_line(MEASURE_TITLE_LENGTH[1], MEASURE_TITLE_LENGTH[0])
Description = multi_line(MEASURE_DESCRIPTION_LENGTH[1], MEASURE_DESCRIPTION_LENGTH[0])
Statement = multi_line(STATEMENT_MAX_LENGTH, 1)
Reference = single_line(60, 1)
# Dates a city plausibly records: no year 0001 or 9999 from a typo.
PlausibleDate = Annotated[date, Field(ge=date(1990, 1, 1), le=date(2100, 12, 31))]


class MeasureRequest(StrictModel):
    working_group_id: Slug  # type: ignore[valid-type]
    district_id: Slug | None = None  # type: ignore[valid-type]
    title: MeasureTitle  # type: ignore[valid-type]
    description: Description  # type: ignore[valid-type]
    proposal_ids: list[UUID] = Field(min_length=1, max_length=100)


class CouncilDecisionRequest(StrictModel):
    decided_on: PlausibleDate
    reference: Reference  # type: ignore[valid-type]
    decision: CouncilDecision
    public_statement: Statement  # type: ignore[valid-type]


class ProgressRequest(StrictModel):
    status: ProgressStatus
    on: PlausibleDate
    public_statement: Statement  # type: ignore[valid-type]


class FollowRequest(StrictModel):
    email: Email
    language: Language = "de"


class MeasureCreated(BaseModel):
    id: UUID


class CouncilDecisionOut(BaseModel):
    decided_on: date
    reference: str
    decision: CouncilDecision
    public_statement: str


class ProgressOut(BaseModel):
    status: ProgressStatus
    on: date
    public_statement: str


class LinkedProposal(BaseModel):
    id: UUID
    title: str
    outcome: Outcome | None
    url: str


class MeasureSummary(BaseModel):
    id: UUID
    working_group: WorkingGroupRef
    district: DistrictRef | None
    title: str
    status: MeasureStatus
    council_decision: CouncilDecisionOut | None
    created_at: datetime
    updated_at: datetime


class MeasurePublic(MeasureSummary):
    description: str
    proposals: list[LinkedProposal]
    timeline: list[ProgressOut]


class MeasurePage(BaseModel):
    items: list[MeasureSummary]
    next_cursor: str | None
