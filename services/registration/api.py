"""HTTP routes of the registration service: parse, call the use case, map the answer."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from services.registration import pages, service
from services.registration import repository as repo
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
from shared.http import Problem, validation_errors_from
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1", tags=["registration"])
Staff = require_role("staff")
Admin = require_role("admin")
TokenQuery = Annotated[str, Query(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]


def _runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


async def rate_limited(request: Request) -> None:
    request.app.state.rate_limiter(request)


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not (1 <= len(key) <= 200) or not key.isprintable():
        raise Problem(
            422,
            "Invalid request",
            "The Idempotency-Key header is invalid.",
            errors=[{"field": "Idempotency-Key", "message": "1 to 200 printable characters"}],
        )
    return key


# --- public catalog ---------------------------------------------------------------------------------------


@router.get("/working-groups", response_model=list[WorkingGroupOut])
async def list_working_groups(request: Request) -> list[dict]:
    async with _runtime(request).transaction() as session:
        return await service.working_group_views(session)


@router.get("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def get_working_group(working_group_id: str, request: Request) -> dict:
    async with _runtime(request).transaction() as session:
        views = await service.working_group_views(session, [working_group_id])
    if not views:
        raise Problem(404, "Not found", "There is no working group with this id.")
    return views[0]


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
    key = _check_idempotency_key(idempotency_key)
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    try:
        async with runtime.transaction() as session:
            if key is not None:
                stored = await repo.idempotent_response(session, key)
                if stored is not None:
                    return _replay(stored, request_hash)
            if body.website:
                # Honeypot filled: a bot. Answer like a success, store and send nothing.
                registration_id = uuid.uuid4()
            else:
                registration_id = await service.submit_registration(session, runtime.settings, body)
            answer = {"id": str(registration_id), "status": "pending_confirmation"}
            if key is not None:
                await session.execute(
                    insert(idempotency_keys).values(
                        key=key, request_hash=request_hash, status_code=202, response=answer
                    )
                )
    except IntegrityError:
        # The same key raced in twice: the other request committed first; answer as it did.
        async with runtime.transaction() as session:
            stored = await repo.idempotent_response(session, key) if key else None
        if stored is None:
            raise
        return _replay(stored, request_hash)
    return JSONResponse(answer, status_code=202)


def _replay(stored: Any, request_hash: str) -> JSONResponse:
    if stored.request_hash != request_hash:
        raise Problem(
            422,
            "Idempotency key reused",
            "This Idempotency-Key was used with a different body.",
            errors=[{"field": "Idempotency-Key", "message": "already used with a different body"}],
        )
    return JSONResponse(stored.response, status_code=stored.status_code)


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


async def _language_for(request: Request, token: str) -> str:
    async with _runtime(request).transaction() as session:
        found = await repo.registration_by_token_hash(session, service.hash_token(token))
    return found.language if found else "de"


@router.get("/registrations/confirm", response_class=HTMLResponse)
async def confirm_page(request: Request, token: TokenQuery) -> HTMLResponse:
    """Shows a page with a confirm button and changes nothing (mail scanners open links)."""
    return await _action_page(request, token, "confirm")


@router.get("/registrations/cancel", response_class=HTMLResponse)
async def cancel_page(request: Request, token: TokenQuery) -> HTMLResponse:
    return await _action_page(request, token, "cancel")


async def _action_page(request: Request, token: str, kind: str) -> HTMLResponse:
    async with _runtime(request).transaction() as session:
        found = await repo.registration_by_token_hash(session, service.hash_token(token))
        wg = await repo.get_working_group(session, found.working_group_id) if found else None
        revoked = found is None and await service.revoked_link(session, token)
        expired = wg is not None and await service._link_expired(session, wg.id, datetime.now(UTC))
    if revoked:
        return HTMLResponse(pages.result_page("de", dict(service.CANCELLED_ONLY)), headers=NO_STORE)
    if found is None or wg is None or found.status == "expired" or expired:
        return HTMLResponse(pages.not_found_page(), status_code=404)
    html = pages.action_page(found.language, kind, wg.title, f"/v1/registrations/{kind}", token)
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


async def _token_action(request: Request, action: Any) -> Response:
    """Confirm or cancel: JSON in, JSON out; or the link page's form in, a page out."""
    token, from_form = await _token_body(request)
    runtime = _runtime(request)
    try:
        async with runtime.transaction() as session:
            state = await action(session, runtime.settings, token)
    except Problem as problem:
        if from_form and problem.status == 404:
            return HTMLResponse(pages.not_found_page(), status_code=404)
        raise
    return await _answer(request, token, state, from_form)


async def _answer(request: Request, token: str, state: dict, from_form: bool) -> Response:
    body = RegistrationState(**state).model_dump(mode="json", exclude_none=True)
    if from_form:
        return HTMLResponse(pages.result_page(await _language_for(request, token), body))
    return JSONResponse(body)


@router.get("/registrations/me")
async def me(request: Request, token: TokenQuery) -> dict:
    async with _runtime(request).transaction() as session:
        return await service.registration_status(session, token)


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
    async with _runtime(request).transaction() as session:
        if await repo.get_working_group(session, working_group_id) is None:
            raise Problem(404, "Not found", "There is no working group with this id.")
        rows = await repo.participants(session, working_group_id)
        # Reading personal data is a staff action too: it goes into the audit log.
        await service.audit(session, user.subject, "participants.read", working_group_id, {"format": format})
    people = []
    position = 0
    for row in rows:
        person = {
            field: getattr(row, field, None) for field in PARTICIPANT_FIELDS if field != "waitlist_position"
        }
        if row.status == "waitlisted":
            position += 1
            person["waitlist_position"] = position
        people.append(person)
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
    """Planning figures per meeting: confirmed and waitlisted counts by type, district, language,
    interpretation language and accessibility needs (a registration covers both meetings)."""
    async with _runtime(request).transaction() as session:
        views = await service.working_group_views(session, [working_group_id])
        if not views:
            raise Problem(404, "Not found", "There is no working group with this id.")
        rows = await repo.participants(session, working_group_id)
        # The figures include accessibility needs (health data, Art. 9 GDPR): the read is audited.
        await service.audit(session, user.subject, "planning.read", working_group_id, {})
    figures: dict[str, dict[str, dict[str, int]]] = {}
    for status in ("confirmed", "waitlisted"):
        group = [r for r in rows if r.status == status]
        figures[status] = {
            "total": {"all": len(group)},
            "participant_type": _tally(r.participant_type for r in group),
            "district": _tally(r.district or "unknown" for r in group),
            "language": _tally(r.language for r in group),
            "interpretation_language": _tally(
                r.interpretation_language for r in group if r.interpretation_language
            ),
            "accessibility_needs": {"with_needs": sum(1 for r in group if r.accessibility_needs)},
        }
    view = views[0]
    return {
        "working_group": {"id": view["id"], "title": view["title"], "capacity": view["capacity"]},
        "meetings": [
            {**meeting, "figures": figures if not meeting["cancelled"] else None}
            for meeting in view["meetings"]
        ],
        "accessibility_needs": [
            r.accessibility_needs for r in rows if r.status == "confirmed" and r.accessibility_needs
        ],
    }


def _tally(values: Any) -> dict[str, int]:
    result: dict[str, int] = {}
    for value in values:
        result[value] = result.get(value, 0) + 1
    return dict(sorted(result.items()))


@router.patch("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def change_working_group(
    working_group_id: str, body: WorkingGroupChange, request: Request, user: Admin
) -> dict:
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        await service.change_working_group(
            session,
            runtime.settings,
            working_group_id,
            capacity=body.capacity,
            expert_reserved=body.expert_reserved,
        )
        await service.audit(
            session, user.subject, "working_group.changed", working_group_id, body.model_dump()
        )
    async with runtime.transaction() as session:
        return (await service.working_group_views(session, [working_group_id]))[0]


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
    async with runtime.transaction() as session:
        await service.change_meeting(session, runtime.settings, working_group_id, number, changes)
        await service.audit(
            session,
            user.subject,
            "meeting.changed",
            f"{working_group_id}/{number}",
            body.model_dump(mode="json"),
        )
    async with runtime.transaction() as session:
        return (await service.working_group_views(session, [working_group_id]))[0]
