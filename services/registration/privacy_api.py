"""HTTP routes for erasure on request (Art. 17): the public door, the mailed link, the admin route."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from services.registration import domain, pages, privacy, service
from services.registration.api import (
    TokenQuery,
    _form_frame,
    _frame,
    _runtime,
    _token_body,
)
from services.registration.schemas import TokenRequest
from shared.auth import require_role
from shared.http import private
from shared.languages import Language
from shared.pages import not_found_page, page_response, wants_html
from shared.ratelimit import rate_limited
from shared.validation import Email, StrictModel, single_line

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])
Admin = require_role("admin")
Reference = single_line(200)


class ErasureRequest(StrictModel):
    email: Email
    language: Language = "de"


class ErasureByLetter(StrictModel):
    email: Email
    # The office's file reference of the letter (no address, please: it goes into the audit log).
    reference: Reference  # type: ignore[valid-type]


class ErasurePending(BaseModel):
    status: Literal["pending_verification"] = "pending_verification"


class ErasureStarted(BaseModel):
    request_id: uuid.UUID
    status: Literal["pending_verification", "erasing", "completed"]


class ErasureAccepted(BaseModel):
    request_id: uuid.UUID


class ServiceAnswers(BaseModel):
    registration: Literal["pending", "completed"]
    notification: Literal["pending", "completed"]
    proposals: Literal["pending", "completed"]


class ErasureState(BaseModel):
    request_id: uuid.UUID
    status: Literal["pending_verification", "erasing", "completed"]
    services: ServiceAnswers


_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": TokenRequest.model_json_schema()}},
    }
}


@router.post(
    "/erasure-requests",
    status_code=202,
    response_model=ErasurePending,
    dependencies=[Depends(rate_limited)],
    responses={
        422: {"description": "Invalid field (problem+json)"},
        429: {"description": "Too many requests"},
    },
)
async def request_erasure(body: ErasureRequest, request: Request) -> JSONResponse:
    """The same answer whether or not the address is known; a mail with a link goes to the address."""
    request.app.state.erasure_limiter(request)  # the client's hourly budget, before the global cap
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        await privacy.request_erasure(session, runtime.settings, str(body.email), body.language)
    return JSONResponse({"status": "pending_verification"}, status_code=202)


@router.get("/erasure-requests/confirm", response_class=HTMLResponse)
@private
async def confirm_page(request: Request, token: TokenQuery) -> HTMLResponse:
    """Shows a page with a button and changes nothing (mail scanners open links)."""
    async with _runtime(request).transaction() as session:
        language = await privacy.pending_request_language(session, token)
    frame = _frame(request, language, pages.ERASURE_CONFIRM, token)
    if language is None:
        return page_response(not_found_page(frame), 404)
    return page_response(pages.erasure_page(frame, token))


@router.post(
    "/erasure-requests/confirm",
    status_code=202,
    response_model=ErasureStarted,
    openapi_extra=_TOKEN_BODY,
    dependencies=[Depends(rate_limited)],
    responses={404: {"description": "Unknown or expired link (problem+json)"}},
)
@private
async def confirm(request: Request) -> Response:
    token, from_form, form_language = await _token_body(request)
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        language = await privacy.pending_request_language(session, token)
        try:
            state = await privacy.confirm_erasure(session, token)
        except domain.NotFound:
            if not from_form:
                raise
            frame = _form_frame(request, form_language, language or "de", token)
            return page_response(not_found_page(frame), 404)
    body = ErasureStarted(**state).model_dump(mode="json")
    if from_form:
        frame = _form_frame(request, form_language, language or "de", token)
        link = pages.erasure_status_link(state["request_id"], token, frame.language)
        return page_response(pages.erasure_status_page(frame, state["status"], link), 202)
    return JSONResponse(body, status_code=202)


@router.get(
    "/erasure-requests/{request_id}",
    response_model=ErasureState,
    responses={
        200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"},
        404: {"description": "Unknown request, or the token does not belong to it"},
    },
)
@private
async def erasure_state(request_id: uuid.UUID, request: Request, token: TokenQuery) -> Response:
    """The request's state; a browser (``Accept: text/html``) gets a page."""
    html = wants_html(request)
    async with _runtime(request).transaction() as session:
        try:
            state = await privacy.erasure_state(session, request_id, token)
        except domain.NotFound:
            if not html:
                raise
            frame = _frame(request, None, f"/v1/privacy/erasure-requests/{request_id}", token)
            return page_response(not_found_page(frame), 404)
        language = await privacy.pending_request_language(session, token)
    if not html:
        return JSONResponse(ErasureState(**state).model_dump(mode="json"))
    frame = _frame(request, language, f"/v1/privacy/erasure-requests/{request_id}", token)
    return page_response(pages.erasure_status_page(frame, state["status"]))


@router.post("/erasures", status_code=202, response_model=ErasureAccepted)
async def start_erasure(body: ErasureByLetter, request: Request, user: Admin) -> JSONResponse:
    """An erasure asked for by letter. Audited with the reference, never with the address."""
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        request_id = await privacy.start_erasure_by_admin(session, runtime.settings, str(body.email))
        await service.audit(
            session, user.subject, "privacy.erasure_started", str(request_id), {"reference": body.reference}
        )
    return JSONResponse({"request_id": str(request_id)}, status_code=202)


@router.get("/erasures/{request_id}", response_model=ErasureState)
async def admin_erasure_state(request_id: uuid.UUID, request: Request, user: Admin) -> dict[str, Any]:
    async with _runtime(request).transaction() as session:
        return await privacy.erasure_state(session, request_id, None)
