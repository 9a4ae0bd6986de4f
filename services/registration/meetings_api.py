"""HTTP routes after the meetings (issue 24): check-in at the door and walk-ins, the attendance list (JSON,
CSV, a page for a clipboard), and the minutes (written by staff, public once published). Parse, call the
use case in ``meetings``, answer; domain errors become problem+json through ``api.DOMAIN_ERRORS``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import AnyUrl, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain, meetings, meetings_pages
from services.registration.api import Staff, _catalog, _frame, _runtime
from services.registration.models import idempotency_keys
from shared.csvsafe import csv_cell, spreadsheet_csv
from shared.events import ParticipantType
from shared.idempotency import IDEMPOTENCY_KEY_PARAMETER, checked_key, idempotent
from shared.languages import Language
from shared.pages import PAGE_HEADERS, Frame, Identity, not_found_page, page_response, wants_html
from shared.validation import StrictModel, multi_line, single_line

router = APIRouter(prefix="/v1/working-groups", tags=["after the meetings"])
MeetingNumber = Annotated[int, Path(ge=1, le=20)]
WorkingGroupId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Summary = multi_line(domain.MINUTES_MAX_CHARS)
Code = single_line(20)
SearchName = Annotated[str | None, Query(min_length=1, max_length=100)]


class WalkIn(StrictModel):
    participant_type: ParticipantType
    language: Language


class CheckIn(StrictModel):
    """Exactly one of the three: a registration, the code from its mail, or someone who came unregistered."""

    registration_id: uuid.UUID | None = None
    check_in_code: Code | None = None  # type: ignore[valid-type]
    walk_in: WalkIn | None = None


class MinutesIn(StrictModel):
    summary_md: Summary  # type: ignore[valid-type]
    document_url: Annotated[AnyUrl, Field(max_length=2000)] | None = None
    publish: bool


def _exactly_one(body: CheckIn) -> None:
    given = [
        name for name in ("registration_id", "check_in_code", "walk_in") if getattr(body, name) is not None
    ]
    if len(given) != 1:
        raise domain.InvalidRequest(
            "give exactly one of registration_id, check_in_code and walk_in",
            errors=[
                {"field": name, "message": "give exactly one of registration_id, check_in_code and walk_in"}
                for name in (given or ["registration_id", "check_in_code", "walk_in"])
            ],
        )


@router.post(
    "/{working_group_id}/meetings/{number}/attendance",
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def check_in(
    working_group_id: WorkingGroupId, number: MeetingNumber, body: CheckIn, request: Request, user: Staff
) -> JSONResponse:
    """Check a registration in (by id or by its code), or count a walk-in. Checking in twice answers the
    first entry (``repeated: true``)."""
    _exactly_one(body)
    runtime = _runtime(request)
    walk_in = body.walk_in
    if walk_in is not None:
        # A walk-in is a new person each time: a device that sends again after a lost answer uses the same
        # Idempotency-Key and is answered as the first time, counted once.
        async def count(conn: AsyncConnection) -> dict[str, Any]:
            entry = await meetings.count_walk_in(
                conn, _catalog(request), working_group_id, number, walk_in.participant_type, walk_in.language
            )
            return dict(jsonable_encoder(entry))

        key = checked_key(request.headers.get("idempotency-key"))
        return await idempotent(runtime.transaction, idempotency_keys, key, body, count, status_code=200)
    async with runtime.transaction() as conn:
        entry = await meetings.check_in(
            conn,
            _catalog(request),
            working_group_id,
            number,
            user.subject,
            registration_id=body.registration_id,
            check_in_code=body.check_in_code,
        )
    return JSONResponse(jsonable_encoder(entry))


CSV_FIELDS = (
    "name",
    "organization",
    "participant_type",
    "language",
    "check_in_code",
    "present",
    "checked_in_at",
)


@router.get(
    "/{working_group_id}/meetings/{number}/attendance",
    responses={200: {"content": {"text/csv": {}, "text/html": {}}, "description": "JSON, CSV or the page"}},
)
async def attendance(
    working_group_id: WorkingGroupId,
    number: MeetingNumber,
    request: Request,
    user: Staff,
    format: Literal["json", "csv"] = "json",
    q: SearchName = None,
) -> Response:
    """The meeting's list sorted by name with counts and interpreters; ``q`` searches by name (the staff's
    search at the door); ``?format=csv`` or ``Accept: text/html`` for the printed list with a signature
    column."""
    html = format == "json" and wants_html(request)
    shown = "html" if html else format
    async with _runtime(request).transaction() as conn:
        data = await meetings.attendance(
            conn, _catalog(request), working_group_id, number, user.subject, q, shown
        )
    if format == "csv":
        rows = [[*CSV_FIELDS, "signature"]]
        rows += [[csv_cell(entry.get(f)) for f in CSV_FIELDS] + [""] for entry in data["entries"]]
        name = f"anwesenheit-{working_group_id}-{number}.csv"
        return Response(
            spreadsheet_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"', **PAGE_HEADERS},
        )
    if html:
        # Staff data is German (the office's working language).
        frame = Frame("de", Identity.of(_runtime(request).settings))
        return page_response(meetings_pages.attendance_page(frame, data))
    return JSONResponse(jsonable_encoder(data), headers={"Cache-Control": "no-store"})


@router.put("/{working_group_id}/meetings/{number}/minutes")
async def write_minutes(
    working_group_id: WorkingGroupId, number: MeetingNumber, body: MinutesIn, request: Request, user: Staff
) -> JSONResponse:
    """A new version of the minutes (all versions are kept); ``publish: true`` makes it public and mails
    every attendee with an address a link."""
    runtime = _runtime(request)
    async with runtime.transaction() as conn:
        minutes = await meetings.write_minutes(
            conn,
            runtime.settings,
            _catalog(request),
            working_group_id,
            number,
            user.subject,
            body.summary_md,
            str(body.document_url) if body.document_url is not None else None,
            body.publish,
        )
    return JSONResponse(jsonable_encoder(minutes))


@router.get(
    "/{working_group_id}/meetings/{number}/minutes",
    responses={
        200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"},
        404: {"description": "No such meeting, or nothing published yet"},
    },
)
async def read_minutes(
    working_group_id: WorkingGroupId,
    number: MeetingNumber,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> Response:
    """Public once published: the newest published version, or ``?version=``; a page by content negotiation."""
    html = wants_html(request)
    path = meetings_pages.minutes_link(working_group_id, number)
    try:
        async with _runtime(request).transaction() as conn:
            minutes, meeting, versions = await meetings.published_minutes(
                conn, _catalog(request), working_group_id, number, version
            )
    except domain.NotFound:
        if html:
            return page_response(not_found_page(_frame(request, None, path)), 404)
        raise
    if not html:
        body: dict[str, Any] = {
            **minutes,
            "summary_html": str(meetings_pages.render_markdown(minutes["summary_md"])),
            "versions": versions,
        }
        return JSONResponse(jsonable_encoder(body))
    query = {"version": str(version)} if version else {}
    frame = Frame(_frame(request, None).language, Identity.of(_runtime(request).settings), path, query)
    return page_response(meetings_pages.minutes_page(frame, minutes, meeting, versions))
