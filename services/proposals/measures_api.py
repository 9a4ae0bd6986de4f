"""HTTP routes of measures (API.md, "Measures"): staff write (``moderator``), the public reads (JSON, or
a page for a browser), follows by double opt-in and unsubscribes with one click; and open data. Domain
errors become problem+json through the service's one ``DOMAIN_ERRORS`` table."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse

from services.proposals import domain, measures_pages, measures_service, open_data
from services.proposals.measures_schemas import (
    CouncilDecisionRequest,
    FollowRequest,
    MeasureCreated,
    MeasurePage,
    MeasurePublic,
    MeasureRequest,
    ProgressRequest,
)
from shared.auth import require_role
from shared.http import json_or_form, json_or_form_body, private, validated
from shared.pages import (
    LANGUAGE_NAMES,
    Frame,
    Identity,
    chosen_language,
    not_found_page,
    page_response,
    wants_html,
)
from shared.pagination import decode_timestamp_cursor
from shared.ratelimit import rate_limited
from shared.runtime import ServiceRuntime
from shared.validation import NO_CONTROL_CHARACTERS

router = APIRouter(prefix="/v1")
Moderator = require_role("moderator")

TokenQuery = Annotated[str, Query(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]
Slug = Annotated[str | None, Query(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_\-]+$")]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=100)]
SearchText = Annotated[str | None, Query(min_length=1, max_length=200), NO_CONTROL_CHARACTERS]
PAGE_RESPONSE = {200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"}}


def _runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def _frame(request: Request, language: str | None, path: str, query: dict[str, str]) -> Frame:
    return Frame(chosen_language(request, language), Identity.of(_runtime(request).settings), path, query)


# --- staff -----------------------------------------------------------------------------------------------


@router.post("/measures", status_code=201, response_model=MeasureCreated, tags=["measures"])
async def create_measure(body: MeasureRequest, request: Request, user: Moderator) -> dict:
    """A measure of a working group (optionally a district), linking the adopted or partially adopted
    proposals it grew from (any other: 422 naming them)."""
    async with _runtime(request).transaction() as session:
        return await measures_service.create_measure(session, user.subject, body)


@router.post("/measures/{measure_id}/council-decision", response_model=MeasurePublic, tags=["measures"])
async def council_decision(
    measure_id: uuid.UUID, body: CouncilDecisionRequest, request: Request, user: Moderator
) -> dict:
    """The council's decision, once (a second: 409); mailed to authors and followers."""
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        return await measures_service.decide_in_council(
            session, runtime.settings, user.subject, measure_id, body
        )


@router.post("/measures/{measure_id}/progress", response_model=MeasurePublic, tags=["measures"])
async def progress(measure_id: uuid.UUID, body: ProgressRequest, request: Request, user: Moderator) -> dict:
    """A progress entry; nothing after ``done`` or ``dropped`` (409). Mailed to authors and followers."""
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        return await measures_service.add_progress(session, runtime.settings, user.subject, measure_id, body)


# --- the public ------------------------------------------------------------------------------------------


@router.get("/measures", response_model=MeasurePage, tags=["measures"])
async def list_measures(
    request: Request,
    working_group_id: Slug = None,
    district_id: Slug = None,
    status: domain.MeasureStatus | None = None,
    q: SearchText = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> dict:
    """Measures, newest first; ``q`` searches title and description whatever the accents."""
    after = decode_timestamp_cursor(cursor)
    async with _runtime(request).transaction() as session:
        return await measures_service.measure_page(
            session,
            working_group_id=working_group_id,
            district_id=district_id,
            status=status,
            q=q.strip() if q else None,
            after=after,
            limit=limit,
        )


@router.get(
    "/measures/{measure_id}", response_model=MeasurePublic, tags=["measures"], responses=PAGE_RESPONSE
)
async def get_measure(measure_id: uuid.UUID, request: Request) -> Response:
    """A measure with its proposals, the council's decision and the timeline; a page for a browser."""
    runtime = _runtime(request)
    html = wants_html(request)
    path = f"/v1/measures/{measure_id}"
    try:
        async with runtime.transaction() as session:
            view = await measures_service.measure_view(session, runtime.settings, measure_id)
    except domain.NotFound:
        if not html:
            raise
        return page_response(not_found_page(_frame(request, None, path, {})), 404)
    if not html:
        # Serialised by pydantic in one pass (jsonable_encoder walks 20 years of entries slowly).
        return Response(MeasurePublic(**view).model_dump_json(), media_type="application/json")
    return page_response(measures_pages.measure_page(_frame(request, None, path, {}), view))


@router.post(
    "/measures/{measure_id}/followers",
    status_code=202,
    dependencies=[Depends(rate_limited)],
    tags=["measures"],
    openapi_extra=json_or_form_body(FollowRequest),
    responses={429: {"description": "Too many requests from this client (problem+json, Retry-After)"}},
)
@private
async def follow(measure_id: uuid.UUID, request: Request) -> Response:
    """Follow a measure: a double opt-in mail. The answer is the same whether the address follows
    already or not; the page's form gets the "check your mail" page."""
    request.app.state.follow_limiter(request)
    runtime = _runtime(request)
    data, from_form = await json_or_form(request)
    body = validated(FollowRequest, data)
    path = f"/v1/measures/{measure_id}"
    async with runtime.transaction() as session:
        await measures_service.follow(session, runtime.settings, measure_id, body)
        view = (
            await measures_service.measure_view(session, runtime.settings, measure_id) if from_form else None
        )
    if view is None:
        return JSONResponse({"status": "check your mail"}, status_code=202)
    frame = _frame(request, body.language, path, {})
    return page_response(
        measures_pages.measure_page(frame, view, notice=measures_pages.follow_requested_notice(frame)), 202
    )


@router.get("/measures/followers/confirm", tags=["measures"], responses=PAGE_RESPONSE)
@private
async def confirm_page(request: Request, token: TokenQuery) -> Response:
    """The link in the opt-in mail: a page with the button that confirms (a GET never confirms, so a
    mail scanner following links subscribes nobody)."""
    path = "/v1/measures/followers/confirm"
    try:
        async with _runtime(request).transaction() as session:
            view = await measures_service.follower(session, token)
    except domain.NotFound:
        if not wants_html(request):
            raise
        return page_response(not_found_page(_frame(request, None, path, {"token": token})), 404)
    if not wants_html(request):
        return JSONResponse(jsonable_encoder(view))
    frame = _frame(request, view["language"], path, {"token": token})
    return page_response(measures_pages.confirm_page(frame, view, token))


@router.post("/measures/followers/confirm", tags=["measures"], dependencies=[Depends(rate_limited)])
@private
async def confirm(request: Request, token: TokenQuery) -> Response:
    path = "/v1/measures/followers/confirm"
    try:
        async with _runtime(request).transaction() as session:
            view = await measures_service.confirm_follow(session, token)
    except domain.NotFound:
        if not wants_html(request):
            raise
        return page_response(not_found_page(_frame(request, None, path, {})), 404)
    if not wants_html(request):
        return JSONResponse(jsonable_encoder(view))
    return page_response(measures_pages.confirmed_page(_frame(request, view["language"], path, {}), view))


@router.get("/measures/{measure_id}/unsubscribe", tags=["measures"], responses=PAGE_RESPONSE)
@private
async def unsubscribe_page(measure_id: uuid.UUID, request: Request, token: TokenQuery) -> Response:
    """The unsubscribe link in every mail about a measure: a page with the button."""
    frame = _frame(request, None, f"/v1/measures/{measure_id}/unsubscribe", {"token": token})
    return page_response(measures_pages.unsubscribe_page(frame, str(measure_id), token))


@router.post("/measures/{measure_id}/unsubscribe", tags=["measures"], dependencies=[Depends(rate_limited)])
@private
async def unsubscribe(measure_id: uuid.UUID, request: Request, token: TokenQuery) -> Response:
    """One-click unsubscribe (RFC 8058: the mail program POSTs ``List-Unsubscribe=One-Click``): a
    follower's address is deleted at once; an author gets no further mails about this measure."""
    runtime = _runtime(request)
    path = f"/v1/measures/{measure_id}/unsubscribe"
    try:
        async with runtime.transaction() as session:
            language = await measures_service.unsubscribe(session, runtime.settings, measure_id, token)
    except domain.NotFound:
        if not wants_html(request):
            raise
        return page_response(not_found_page(_frame(request, None, path, {})), 404)
    if not wants_html(request):
        return JSONResponse({"unsubscribed": True})
    frame = _frame(request, language if language in LANGUAGE_NAMES else None, path, {})
    return page_response(measures_pages.unsubscribed_page(frame, str(measure_id)))


# --- open data -------------------------------------------------------------------------------------------


@router.get("/open-data/catalog.jsonld", tags=["open data"])
async def open_data_catalog(request: Request) -> Response:
    """DCAT-AP.de: the catalog of the data sets below, for the city's open-data portal to harvest."""
    settings = _runtime(request).settings
    return JSONResponse(open_data.catalog(settings), media_type="application/ld+json")


@router.get(
    "/open-data/{dataset}.{fmt}",
    tags=["open data"],
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def open_data_set(
    request: Request,
    dataset: Literal["proposals", "measures", "attendance"],
    fmt: Literal["csv", "json"],
) -> Response:
    """Published proposals with outcomes, measures with their timeline, attendance counts per meeting —
    no personal data; licence in the ``Link`` header and the catalog."""
    settings = _runtime(request).settings
    async with _runtime(request).transaction() as session:
        rows = await open_data.dataset(session, dataset)
    headers = {"Link": f'<{settings.open_data_license}>; rel="license"'}
    if fmt == "csv":
        return PlainTextResponse(
            open_data.to_csv(rows), media_type="text/csv; charset=utf-8", headers=headers
        )
    return JSONResponse(
        jsonable_encoder({"license": settings.open_data_license, "items": rows}), headers=headers
    )
