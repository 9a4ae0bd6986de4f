"""HTTP routes of the registration service: parse, call the use case, answer. Domain errors become
problem+json through ``DOMAIN_ERRORS`` (registered with the app); no SQL and no rules here."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import catalog, domain, forms, pages, service, staff
from services.registration.catalog import CatalogCache
from services.registration.config import RegistrationSettings
from services.registration.models import idempotency_keys
from services.registration.runtime import RegistrationRuntime
from services.registration.schemas import (
    MeetingChange,
    RegistrationAccepted,
    RegistrationRequest,
    RegistrationState,
    TokenRequest,
    WorkingGroupChange,
    WorkingGroupOut,
)
from shared import i18n
from shared.auth import require_role
from shared.csvsafe import csv_cell, spreadsheet_csv
from shared.http import DomainErrors, json_or_form, json_or_form_body, private, validated
from shared.idempotency import IDEMPOTENCY_KEY_PARAMETER, checked_key, idempotent
from shared.pages import (
    LANGUAGE_NAMES,
    PAGE_HEADERS,
    Frame,
    Identity,
    chosen_language,
    not_found_page,
    page_response,
    wants_html,
)

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


def _runtime(request: Request) -> RegistrationRuntime:
    return request.app.state.runtime


def _catalog(request: Request) -> CatalogCache:
    return _runtime(request).catalog


# --- public catalog ---------------------------------------------------------------------------------------


@router.get("/working-groups", response_model=list[WorkingGroupOut])
async def list_working_groups(request: Request) -> list[dict]:
    async with _runtime(request).transaction() as conn:
        return await catalog.working_group_views(conn)


@router.get("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def get_working_group(working_group_id: str, request: Request) -> dict:
    async with _runtime(request).transaction() as conn:
        return await catalog.working_group_view(conn, working_group_id)


# --- registration -------------------------------------------------------------------------------------------


@router.post(
    "/registrations",
    status_code=202,
    response_model=RegistrationAccepted,
    responses={
        422: {"description": "Invalid field (problem+json)"},
        413: {"description": "Body too large"},
        429: {"description": "Too many requests from this client (problem+json, Retry-After)"},
    },
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER], **json_or_form_body(RegistrationRequest)},
)
async def register(request: Request) -> Response:
    """JSON in, JSON out; the registration form's fields (form-encoded) in, a page out (``forms``)."""
    data, from_form = await json_or_form(request, max_fields=forms.MAX_FIELDS)
    if from_form:
        return await forms.submit_form(request, data)
    body = validated(RegistrationRequest, data)
    # The rate limit and the Idempotency-Key header are read here rather than as FastAPI dependencies,
    # whose resolution is a noticeable share of this hot path's CPU. (A body that fails validation is
    # answered before the limit counts it; it costs no database work and sends no mail.)
    request.app.state.rate_limiter(request)
    request.app.state.opt_in_limiter(request)  # the client's hourly budget, before the global cap
    idempotency_key = request.headers.get("idempotency-key")
    runtime = _runtime(request)

    async def submit(conn: AsyncConnection) -> dict[str, Any]:
        registration_id = await service.submit_registration(conn, runtime.settings, _catalog(request), body)
        return {"id": str(registration_id), "status": "pending_confirmation"}

    return await idempotent(runtime.transaction, idempotency_keys, checked_key(idempotency_key), body, submit)


async def _token_body(request: Request) -> tuple[str, bool, str | None]:
    """The token from a JSON body ({"token": …}) or from a page's form (with the page's ``lang``).
    Returns (token, from_form, language of the form)."""
    data, from_form = await json_or_form(request, max_fields=5)
    form_language = data.pop("lang", None) if from_form else None
    return validated(TokenRequest, data).token, from_form, form_language


_TOKEN_BODY = json_or_form_body(TokenRequest)


def _frame(request: Request, language: str | None, path: str | None = None, token: str = "") -> Frame:
    """The page frame: the person's language (or the one chosen with ``?lang=``), the city's identity,
    the language switch pointing at ``path`` with the token."""
    return Frame(
        chosen_language(request, language),
        Identity.of(_runtime(request).settings),
        path,
        {"token": token} if token else {},
    )


def _form_frame(request: Request, form_language: str | None, own: str, token: str) -> Frame:
    """The frame of a page answering a form: in the language the form was shown in."""
    language = form_language if form_language in LANGUAGE_NAMES else own
    return Frame(
        i18n.resolve(language), Identity.of(_runtime(request).settings), pages.STATUS, {"token": token}
    )


async def _view(request: Request, token: str) -> service.PageView:
    async with _runtime(request).transaction() as conn:
        return await service.page_view(conn, _catalog(request), token)


def _other_page(frame: Frame, view: service.PageView) -> HTMLResponse | None:
    """The page for a link that was cancelled or is unknown, else None."""
    if view.state == "cancelled":
        return page_response(pages.cancelled_page(frame))
    if view.state == "not_found":
        return page_response(not_found_page(frame), 404)
    return None


@router.get("/registrations/confirm", response_class=HTMLResponse)
@private
async def confirm_page(request: Request, token: TokenQuery) -> HTMLResponse:
    """A page with a confirm button; changes nothing (mail scanners open links). An already confirmed
    registration shows its status."""
    view = await _view(request, token)
    frame = _frame(request, view.language, pages.CONFIRM, token)
    other = _other_page(frame, view)
    if other is not None:
        return other
    if view.status != "pending_confirmation":
        return page_response(pages.status_page(frame, view, token))
    hours = _runtime(request).settings.confirmation_window_hours
    return page_response(pages.confirm_page(frame, view, token, hours))


@router.get("/registrations/cancel", response_class=HTMLResponse)
@private
async def cancel_page(request: Request, token: TokenQuery) -> HTMLResponse:
    view = await _view(request, token)
    frame = _frame(request, view.language, pages.CANCEL, token)
    return _other_page(frame, view) or page_response(pages.cancel_page(frame, view, token))


@router.post(
    "/registrations/confirm",
    response_model=RegistrationState,
    openapi_extra=_TOKEN_BODY,
    responses={429: {"description": "Too many requests from this client (problem+json, Retry-After)"}},
)
@private
async def confirm(request: Request) -> Response:
    return await _token_action(request, service.confirm_registration)


@router.post(
    "/registrations/cancel",
    response_model=RegistrationState,
    openapi_extra=_TOKEN_BODY,
    responses={429: {"description": "Too many requests from this client (problem+json, Retry-After)"}},
)
@private
async def cancel(request: Request) -> Response:
    return await _token_action(request, service.cancel_registration)


@router.post(
    "/registrations/unsubscribe",
    responses={429: {"description": "Too many requests from this client (problem+json, Retry-After)"}},
)
async def unsubscribe(request: Request, token: TokenQuery) -> dict:
    """The one-click unsubscribe of a reminder's ``List-Unsubscribe`` header (RFC 8058: the mail program
    POSTs ``List-Unsubscribe=One-Click`` to the link): no further reminders for the registration."""
    request.app.state.rate_limiter(request)
    async with _runtime(request).transaction() as conn:
        return await service.stop_reminders(conn, token)


TokenUseCase = Callable[[AsyncConnection, RegistrationSettings, CatalogCache, str], Awaitable[dict]]


async def _token_action(request: Request, action: TokenUseCase) -> Response:
    """Confirm or cancel: JSON in, JSON out; or a page's form in, a page out. The client's rate limit is
    checked first, here rather than as a FastAPI dependency (whose resolution is a noticeable share of a
    confirmation's CPU)."""
    request.app.state.rate_limiter(request)
    token, from_form, form_language = await _token_body(request)
    runtime = _runtime(request)
    try:
        async with runtime.transaction() as conn:
            state = await action(conn, runtime.settings, _catalog(request), token)
    except domain.NotFound:
        if from_form:
            return page_response(not_found_page(_form_frame(request, form_language, "de", token)), 404)
        raise
    body = RegistrationState(**state).model_dump(mode="json", exclude_none=True)
    if not from_form:
        return JSONResponse(body)
    view = await _view(request, token)
    frame = _form_frame(request, form_language, view.language, token)
    other = _other_page(frame, view)
    if other is not None:
        return other
    return page_response(pages.status_page(frame, view, token, notice=pages.confirmed_notice(frame, view)))


@router.get(
    "/registrations/me",
    responses={200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"}},
)
@private
async def me(request: Request, token: TokenQuery) -> Response:
    """The registration behind the link: JSON for an API client; for a browser (``Accept: text/html``)
    the page "your registration" (working group, meetings, status, calendar, cancel)."""
    if wants_html(request):
        view = await _view(request, token)
        frame = _frame(request, view.language, pages.STATUS, token)
        return _other_page(frame, view) or page_response(pages.status_page(frame, view, token))
    async with _runtime(request).transaction() as conn:
        status = await service.registration_status(conn, _catalog(request), token)
    return JSONResponse(jsonable_encoder(status))


@router.get("/registrations/me/calendar.ics", responses={200: {"content": {"text/calendar": {}}}})
@private
async def my_calendar(request: Request, token: TokenQuery) -> Response:
    """The meetings of a confirmed registration as a calendar file (the entries its mails carry)."""
    async with _runtime(request).transaction() as conn:
        data = await service.calendar_of(conn, _catalog(request), token)
    return Response(
        data,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="mitwirkung.ics"', **PAGE_HEADERS},
    )


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
    # "bounced": a mail to the person failed for good (the address takes no mail; call or write instead).
    "mail_status",
)


@router.get("/working-groups/{working_group_id}/participants", responses={200: {"content": {"text/csv": {}}}})
async def participants(
    working_group_id: str, request: Request, user: Staff, format: Literal["json", "csv"] = "json"
) -> Response:
    async with _runtime(request).transaction() as conn:
        people = await staff.participant_list(
            conn, working_group_id, user.subject, PARTICIPANT_FIELDS, format
        )
    if format == "csv":
        return Response(
            _csv(people),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="teilnehmende-{working_group_id}.csv"'},
        )
    return JSONResponse(json.loads(json.dumps(people, default=str)))


def _csv(people: list[dict]) -> str:
    return spreadsheet_csv(
        [
            [*PARTICIPANT_FIELDS, "present_meeting_1", "present_meeting_2"],
            *([csv_cell(person.get(f)) for f in PARTICIPANT_FIELDS] + ["", ""] for person in people),
        ]
    )


@router.get("/working-groups/{working_group_id}/planning")
async def planning(working_group_id: str, request: Request, user: Staff) -> dict:
    """Planning figures per meeting (README: Additions to API.md); the read is audited."""
    async with _runtime(request).transaction() as conn:
        return await staff.planning_figures(conn, working_group_id, user.subject)


@router.patch("/working-groups/{working_group_id}", response_model=WorkingGroupOut)
async def change_working_group(
    working_group_id: str, body: WorkingGroupChange, request: Request, user: Admin
) -> dict:
    runtime = _runtime(request)
    async with runtime.transaction() as conn:
        await staff.change_working_group(
            conn,
            runtime.settings,
            _catalog(request),
            working_group_id,
            capacity=body.capacity,
            expert_reserved=body.expert_reserved,
        )
        await service.audit(conn, user.subject, "working_group.changed", working_group_id, body.model_dump())
    async with runtime.transaction() as conn:
        return await catalog.working_group_view(conn, working_group_id)


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
        await staff.change_meeting(
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
        return await catalog.working_group_view(conn, working_group_id)
