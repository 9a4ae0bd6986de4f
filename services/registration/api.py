"""HTTP routes of the registration service: parse, call the use case, answer. Domain errors become
problem+json through ``DOMAIN_ERRORS`` (registered with the app); no SQL and no rules here."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain, pages, service
from services.registration.config import RegistrationSettings
from services.registration.models import idempotency_keys
from services.registration.schemas import (
    MeetingChange,
    RegistrationAccepted,
    RegistrationRequest,
    RegistrationState,
    TokenRequest,
    WorkingGroupChange,
    WorkingGroupOut,
)
from shared.auth import require_role
from shared.http import DomainErrors, Problem, validation_errors_from
from shared.idempotency import checked_key, idempotent
from shared.ratelimit import rate_limited
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1", tags=["registration"])
Staff = require_role("staff")
Admin = require_role("admin")
TokenQuery = Annotated[str, Query(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]

DOMAIN_ERRORS: DomainErrors = {
    domain.NotFound: (404, "Not found"),
    domain.OptInMailsPaused: (429, "Too many requests"),
    domain.TransitionNotAllowed: (409, "Transition not allowed"),
    domain.DomainError: (422, "Invalid request"),
}


def _runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def _catalog(request: Request) -> service.CatalogCache:
    return service.catalog_of(_runtime(request))


# --- public catalog ---------------------------------------------------------------------------------------


@router.get("/working-groups", response_model=list[WorkingGroupOut])
async def list_working_groups(request: Request) -> list[dict]:
    async with _runtime(request).transaction() as conn:
        return await service.working_group_views(conn)


@router.get("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def get_working_group(working_group_id: str, request: Request) -> dict:
    async with _runtime(request).transaction() as conn:
        return await service.working_group_view(conn, working_group_id)


# --- registration -------------------------------------------------------------------------------------------


@router.post(
    "/registrations",
    status_code=202,
    response_model=RegistrationAccepted,
    dependencies=[Depends(rate_limited)],
    responses={422: {"description": "Invalid field (problem+json)"}, 413: {"description": "Body too large"}},
)
async def register(
    body: RegistrationRequest,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    runtime = _runtime(request)

    async def submit(conn: AsyncConnection) -> dict[str, Any]:
        registration_id = await service.submit_registration(conn, runtime.settings, _catalog(request), body)
        return {"id": str(registration_id), "status": "pending_confirmation"}

    return await idempotent(runtime.transaction, idempotency_keys, checked_key(idempotency_key), body, submit)


async def _token_body(request: Request) -> tuple[str, bool]:
    """The token from a JSON body ({"token": …}) or from the page's form. Returns (token, from_form)."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            values = parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=5)
        except ValueError:
            raise Problem(
                422, "Invalid request", errors=[{"field": "body", "message": "too many form fields"}]
            ) from None
        data: Any = {k: v[0] for k, v in values.items()}
        from_form = True
    elif content_type in ("application/json", ""):
        try:
            data = json.loads(raw or b"null")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            raise Problem(
                422, "Invalid request", errors=[{"field": "body", "message": "the body is not valid JSON"}]
            ) from None
        from_form = False
    else:
        raise Problem(415, "Unsupported media type", "Send application/json.")
    try:
        return TokenRequest.model_validate(data).token, from_form
    except ValidationError as exc:
        raise Problem(
            422, "Invalid request", "One or more fields are invalid.", errors=validation_errors_from(exc)
        ) from None


_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}},
    }
}


@router.get("/registrations/confirm", response_class=HTMLResponse)
async def confirm_page(request: Request, token: TokenQuery) -> HTMLResponse:
    """Shows a page with a confirm button and changes nothing (mail scanners open links)."""
    return await _action_page(request, token, "confirm")


@router.get("/registrations/cancel", response_class=HTMLResponse)
async def cancel_page(request: Request, token: TokenQuery) -> HTMLResponse:
    return await _action_page(request, token, "cancel")


async def _action_page(request: Request, token: str, kind: str) -> HTMLResponse:
    async with _runtime(request).transaction() as conn:
        page = await service.link_page(conn, _catalog(request), token)
    if page.state == "cancelled":
        return HTMLResponse(pages.result_page("de", dict(service.CANCELLED_ONLY)), headers=NO_STORE)
    if page.state == "not_found":
        return HTMLResponse(pages.not_found_page(), status_code=404)
    html = pages.action_page(
        page.language, kind, page.working_group_title, f"/v1/registrations/{kind}", token
    )
    return HTMLResponse(html, headers=NO_STORE)


NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.post(
    "/registrations/confirm",
    response_model=RegistrationState,
    openapi_extra=_TOKEN_BODY,
    dependencies=[Depends(rate_limited)],
)
async def confirm(request: Request) -> Response:
    return await _token_action(request, service.confirm_registration)


@router.post(
    "/registrations/cancel",
    response_model=RegistrationState,
    openapi_extra=_TOKEN_BODY,
    dependencies=[Depends(rate_limited)],
)
async def cancel(request: Request) -> Response:
    return await _token_action(request, service.cancel_registration)


TokenUseCase = Callable[[AsyncConnection, RegistrationSettings, service.CatalogCache, str], Awaitable[dict]]


async def _token_action(request: Request, action: TokenUseCase) -> Response:
    """Confirm or cancel: JSON in, JSON out; or the link page's form in, a page out."""
    token, from_form = await _token_body(request)
    runtime = _runtime(request)
    try:
        async with runtime.transaction() as conn:
            state = await action(conn, runtime.settings, _catalog(request), token)
    except domain.NotFound:
        if from_form:
            return HTMLResponse(pages.not_found_page(), status_code=404)
        raise
    body = RegistrationState(**state).model_dump(mode="json", exclude_none=True)
    if from_form:
        async with runtime.transaction() as conn:
            language = await service.language_of(conn, token)
        return HTMLResponse(pages.result_page(language, body))
    return JSONResponse(body)


@router.get("/registrations/me")
async def me(request: Request, token: TokenQuery) -> dict:
    async with _runtime(request).transaction() as conn:
        return await service.registration_status(conn, _catalog(request), token)


# --- staff ----------------------------------------------------------------------------------------------------

PARTICIPANT_FIELDS = (
    "id",
    "status",
    "waitlist_position",
    "name",
    "email",
    "participant_type",
    "organization",
    "district",
    "language",
    "interpretation_language",
    "accessibility_needs",
    "seat",
    "confirmed_at",
)


@router.get("/working-groups/{working_group_id}/participants", responses={200: {"content": {"text/csv": {}}}})
async def participants(
    working_group_id: str, request: Request, user: Staff, format: Literal["json", "csv"] = "json"
) -> Response:
    async with _runtime(request).transaction() as conn:
        people = await service.participant_list(
            conn, working_group_id, user.subject, PARTICIPANT_FIELDS, format
        )
    if format == "csv":
        return Response(
            _csv(people),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="teilnehmende-{working_group_id}.csv"'},
        )
    return JSONResponse(json.loads(json.dumps(people, default=str)))


def _csv_cell(value: Any) -> str:
    text = "" if value is None else (value.isoformat() if isinstance(value, datetime) else str(value))
    # A cell starting with = + - @ would be a formula in a spreadsheet (CSV injection).
    if text and text[0] in "=+-@\t\r":
        text = "'" + text
    return text


def _csv(people: list[dict]) -> str:
    buffer = io.StringIO()
    buffer.write("\ufeff")  # so that spreadsheet programs read UTF-8 (umlauts, Cyrillic, Arabic)
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow([*PARTICIPANT_FIELDS, "present_meeting_1", "present_meeting_2"])
    for person in people:
        writer.writerow([_csv_cell(person.get(f)) for f in PARTICIPANT_FIELDS] + ["", ""])
    return buffer.getvalue()


@router.get("/working-groups/{working_group_id}/planning")
async def planning(working_group_id: str, request: Request, user: Staff) -> dict:
    """Planning figures per meeting (README: Additions to API.md); the read is audited."""
    async with _runtime(request).transaction() as conn:
        return await service.planning_figures(conn, working_group_id, user.subject)


@router.patch("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def change_working_group(
    working_group_id: str, body: WorkingGroupChange, request: Request, user: Admin
) -> dict:
    runtime = _runtime(request)
    async with runtime.transaction() as conn:
        await service.change_working_group(
            conn,
            runtime.settings,
            _catalog(request),
            working_group_id,
            capacity=body.capacity,
            expert_reserved=body.expert_reserved,
        )
        await service.audit(conn, user.subject, "working_group.changed", working_group_id, body.model_dump())
    async with runtime.transaction() as conn:
        return await service.working_group_view(conn, working_group_id)


@router.patch("/working-groups/{working_group_id}/meetings/{number}", response_model=WorkingGroupOut)
async def change_meeting(
    working_group_id: str,
    request: Request,
    body: MeetingChange,
    user: Admin,
    number: Annotated[int, Path(ge=1, le=20)],
) -> dict:
    runtime = _runtime(request)
    changes = body.model_dump(exclude_unset=True)
    async with runtime.transaction() as conn:
        await service.change_meeting(
            conn, runtime.settings, _catalog(request), working_group_id, number, changes
        )
        await service.audit(
            conn,
            user.subject,
            "meeting.changed",
            f"{working_group_id}/{number}",
            body.model_dump(mode="json"),
        )
    async with runtime.transaction() as conn:
        return await service.working_group_view(conn, working_group_id)
