"""HTTP routes of the proposals service: parse, call the use case, answer. Domain errors become
problem+json through ``DOMAIN_ERRORS`` (registered with the app), never here."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import (
    author_service,
    domain,
    forms,
    moderation_service,
    pages,
    public_service,
    report,
    service,
)
from services.proposals.models import idempotency_keys
from services.proposals.schemas import (
    AuthorEdit,
    AuthorView,
    DecisionRequest,
    DistrictAdminOut,
    DistrictChange,
    DistrictCreate,
    DistrictOut,
    ModerationView,
    OutcomeRequest,
    ProposalAccepted,
    ProposalPage,
    ProposalPublic,
    ProposalRequest,
    QueueCounts,
    QueuePage,
    TokenRequest,
)
from shared import i18n
from shared.auth import authorize, require_role
from shared.http import DomainErrors, json_or_form, json_or_form_body, private, validated
from shared.idempotency import IDEMPOTENCY_KEY_PARAMETER, checked_key, idempotent
from shared.pages import (
    LANGUAGE_NAMES,
    Frame,
    Identity,
    chosen_language,
    not_found_page,
    page_link,
    page_response,
    wants_html,
)
from shared.pagination import decode_timestamp_cursor
from shared.ratelimit import rate_limited
from shared.runtime import ServiceRuntime
from shared.validation import NO_CONTROL_CHARACTERS

router = APIRouter(prefix="/v1")
Moderator = require_role("moderator")
Admin = require_role("admin")

DOMAIN_ERRORS: DomainErrors = {
    domain.NotFound: (404, "Not found"),
    domain.TransitionNotAllowed: (409, "Transition not allowed"),
    domain.AlreadyExists: (409, "Already exists"),
    domain.StaleVersion: (412, "Precondition failed"),
    domain.PreconditionRequired: (428, "Precondition required"),
    domain.StatementRequired: (422, "Public statement required"),
    domain.InvalidDuplicate: (422, "Invalid request"),
    domain.InvalidReference: (422, "Invalid request"),
    domain.DomainError: (422, "Invalid request"),
}

TokenQuery = Annotated[str, Query(min_length=10, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")]
Slug = Annotated[str | None, Query(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_\-]+$")]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=100)]
SearchText = Annotated[str | None, Query(min_length=1, max_length=200), NO_CONTROL_CHARACTERS]


def _runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


# --- districts -----------------------------------------------------------------------------------------


@router.get("/districts", response_model=list[DistrictOut] | list[DistrictAdminOut], tags=["districts"])
async def list_districts(request: Request, include_retired: bool = False) -> list[dict]:
    """The active districts; with ``include_retired=true`` (``admin``) every district and its state."""
    if include_retired:
        await authorize(request, "admin")
    async with _runtime(request).transaction() as session:
        return await service.list_districts(session, include_retired=include_retired)


@router.post("/districts", status_code=201, response_model=DistrictAdminOut, tags=["districts"])
async def add_district(body: DistrictCreate, request: Request, user: Admin) -> dict:
    async with _runtime(request).transaction() as session:
        return await service.add_district(session, user.subject, body.model_dump())


@router.patch("/districts/{district_id}", response_model=DistrictAdminOut, tags=["districts"])
async def change_district(district_id: str, body: DistrictChange, request: Request, user: Admin) -> dict:
    """Rename a district, or retire it (``active: false``): it keeps its proposals, takes no new ones."""
    async with _runtime(request).transaction() as session:
        return await service.change_district(
            session, user.subject, district_id, body.model_dump(exclude_unset=True)
        )


# --- the public: intake and reading --------------------------------------------------------------------


@router.post(
    "/proposals",
    status_code=202,
    response_model=ProposalAccepted,
    tags=["proposals"],
    responses={429: {"description": "Too many requests from this client (problem+json, Retry-After)"}},
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER], **json_or_form_body(ProposalRequest)},
)
async def submit(request: Request) -> Response:
    """Nothing is public before a moderator publishes it. With an address, the author gets a receipt
    and a private link to follow, edit when asked, or withdraw. JSON in, JSON out; the proposal form's
    fields (form-encoded) in, a page out (``forms``)."""
    data, from_form = await json_or_form(request, max_fields=forms.MAX_FIELDS)
    if from_form:
        return await forms.submit_form(request, data)
    body = validated(ProposalRequest, data)
    request.app.state.rate_limiter(request)
    request.app.state.intake_limiter(request)  # the client's hourly budget (receipts are mails)
    runtime = _runtime(request)
    idempotency_key = request.headers.get("idempotency-key")

    async def work(session):  # type: ignore[no-untyped-def]
        if body.website:
            # Honeypot filled: a bot. Answer like a success, store and send nothing.
            return {"id": str(uuid.uuid4()), "status": "submitted"}
        return await author_service.submit_proposal(session, runtime.settings, body)

    return await idempotent(runtime.transaction, idempotency_keys, checked_key(idempotency_key), body, work)


@router.get(
    "/proposals",
    response_model=ProposalPage,
    tags=["proposals"],
    responses={200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"}},
)
async def list_published(
    request: Request,
    working_group_id: Slug = None,
    district_id: Slug = None,
    q: SearchText = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Any:
    """Published proposals, newest first; ``q`` searches title and text (German stemming for German).
    A browser (``Accept: text/html``) gets the page with the filters and "more" links."""
    after = decode_timestamp_cursor(cursor)
    if wants_html(request):
        filters = {"working_group_id": working_group_id or "", "district_id": district_id or "",
                   "q": q.strip() if q else ""}  # fmt: skip
        return await forms.published_list(request, filters, after, cursor or "", limit)
    async with _runtime(request).transaction() as session:
        return await public_service.published_page(
            session,
            working_group_id=working_group_id,
            district_id=district_id,
            q=q.strip() if q else None,
            after=after,
            limit=limit,
        )


def _frame(request: Request, language: str | None, path: str | None, query: dict[str, str]) -> Frame:
    return Frame(chosen_language(request, language), Identity.of(_runtime(request).settings), path, query)


async def _districts(request: Request) -> list[dict]:
    async with _runtime(request).transaction() as session:
        return await service.list_districts(session)


@router.get(
    "/proposals/mine",
    response_model=AuthorView,
    tags=["author"],
    responses={200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"}},
)
@private
async def author_view(request: Request, token: TokenQuery) -> Response:
    """The author's private page: status, public statements, whether it can be edited or withdrawn.
    A browser (``Accept: text/html``) gets the page with the edit form and the withdraw button."""
    runtime = _runtime(request)
    html = wants_html(request)
    try:
        async with runtime.transaction() as session:
            view = await author_service.author_view(session, runtime.settings, token)
    except domain.NotFound:
        if not html:
            raise
        return page_response(not_found_page(_frame(request, None, pages.MINE, {"token": token})), 404)
    if not html:
        return JSONResponse(jsonable_encoder(AuthorView(**view)))
    frame = _frame(request, view["language"], pages.MINE, {"token": token})
    return page_response(pages.author_page(frame, view, token, await _districts(request)))


AuthorAction = Callable[[AsyncConnection, Any], Awaitable[dict]]


async def _author_action(request: Request, model: type[BaseModel], action: AuthorAction) -> Response:
    """Edit or withdraw: JSON in, JSON out (errors as problem+json); or the page's form in, the page
    out (with the fields' errors, or why the step is no longer possible)."""
    data, from_form = await json_or_form(request)
    if not from_form:
        body = validated(model, data)
        runtime = _runtime(request)
        async with runtime.transaction() as session:
            return JSONResponse(jsonable_encoder(AuthorView(**await action(session, body))))
    return await _author_form(request, model, action, data)


async def _author_form(
    request: Request, model: type[BaseModel], action: AuthorAction, data: dict[str, str]
) -> Response:
    runtime = _runtime(request)
    form_language = data.pop("lang", None)
    token = data.get("token", "")
    if model is AuthorEdit and not data.get("district_id"):
        data.pop("district_id", None)
    language = form_language if form_language in LANGUAGE_NAMES else None

    def frame(own: str | None) -> Frame:
        chosen = language or i18n.resolve(own or i18n.FALLBACK_LANGUAGE)
        return Frame(chosen, Identity.of(runtime.settings), pages.MINE, {"token": token})

    async def current() -> dict | None:
        try:
            async with runtime.transaction() as session:
                return await author_service.author_view(session, runtime.settings, token)
        except domain.NotFound:
            return None

    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        view = await current() if _token_ok(token) else None
        if view is None:
            return page_response(not_found_page(frame(None)), 404)
        f = frame(view["language"])
        fields = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
        errors = {
            name: pages.field_error(f, name) for name in ("title", "district_id", "body") if name in fields
        }
        html = pages.author_page(
            f, view, token, await _districts(request), problem=pages.invalid_form(f), errors=errors, form=data
        )
        return page_response(html, 422)
    try:
        async with runtime.transaction() as session:
            view = await action(session, body)
    except domain.NotFound:
        return page_response(not_found_page(frame(None)), 404)
    except domain.InvalidReference:
        view = await current()
        if view is None:
            return page_response(not_found_page(frame(None)), 404)
        f = frame(view["language"])
        html = pages.author_page(
            f, view, token, await _districts(request), problem=pages.invalid_form(f),
            errors={"district_id": pages.field_error(f, "district_id")}, form=data,
        )  # fmt: skip
        return page_response(html, 422)
    except domain.DomainError:
        view = await current()
        if view is None:
            return page_response(not_found_page(frame(None)), 404)
        f = frame(view["language"])
        return page_response(
            pages.author_page(f, view, token, await _districts(request), problem=pages.not_possible(f)), 409
        )
    f = frame(view["language"])
    notice = pages.edited_notice(f) if model is AuthorEdit else pages.withdrawn_notice(f)
    return page_response(pages.author_page(f, view, token, await _districts(request), notice=notice))


def _token_ok(token: str) -> bool:
    try:
        TokenRequest.model_validate({"token": token})
    except ValidationError:
        return False
    return True


@router.post(
    "/proposals/mine/edit",
    response_model=AuthorView,
    dependencies=[Depends(rate_limited)],
    tags=["author"],
    openapi_extra=json_or_form_body(AuthorEdit),
)
@private
async def author_edit(request: Request) -> Response:
    """After a moderator asked for changes: the edited text goes back into the moderation queue."""
    runtime = _runtime(request)

    async def edit(session: AsyncConnection, body: Any) -> dict:
        return await author_service.author_edit(session, runtime.settings, body)

    return await _author_action(request, AuthorEdit, edit)


@router.post(
    "/proposals/mine/withdraw",
    response_model=AuthorView,
    dependencies=[Depends(rate_limited)],
    tags=["author"],
    openapi_extra=json_or_form_body(TokenRequest),
)
@private
async def author_withdraw(request: Request) -> Response:
    runtime = _runtime(request)

    async def withdraw(session: AsyncConnection, body: Any) -> dict:
        return await author_service.author_withdraw(session, runtime.settings, body.token)

    return await _author_action(request, TokenRequest, withdraw)


@router.get(
    "/proposals/{proposal_id}",
    response_model=ProposalPublic,
    tags=["proposals"],
    responses={200: {"content": {"text/html": {}}, "description": "JSON, or the page for a browser"}},
)
async def get_published(proposal_id: uuid.UUID, request: Request) -> Response:
    """A published proposal; a browser (``Accept: text/html``) gets its page (mails link here)."""
    html = wants_html(request)
    path = f"/v1/proposals/{proposal_id}"
    try:
        async with _runtime(request).transaction() as session:
            view = await public_service.published_proposal(session, _runtime(request).settings, proposal_id)
    except domain.NotFound:
        if not html:
            raise
        return page_response(not_found_page(_frame(request, None, path, {})), 404)
    if not html:
        return JSONResponse(jsonable_encoder(ProposalPublic(**view)))
    # The proposal's language (mails link here), or the one asked for (the list's links carry it).
    frame = _frame(request, view["language"], path, {})
    share = f"{_runtime(request).settings.public_url}{path}"
    return page_response(
        pages.public_page(frame, view, share, page_link(pages.PUBLISHED, lang=frame.language))
    )


# --- moderation ----------------------------------------------------------------------------------------


@router.get("/moderation/queue", response_model=QueuePage, tags=["moderation"])
async def moderation_queue(
    request: Request,
    user: Moderator,
    status: domain.Status = "submitted",
    working_group_id: Slug = None,
    district_id: Slug = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> dict:
    """Oldest first: the proposal waiting longest comes first."""
    after = decode_timestamp_cursor(cursor)
    async with _runtime(request).transaction() as session:
        return await moderation_service.moderation_queue(
            session,
            status=status,
            working_group_id=working_group_id,
            district_id=district_id,
            after=after,
            limit=limit,
        )


@router.get("/moderation/counts", response_model=QueueCounts, tags=["moderation"])
async def moderation_counts(request: Request, user: Moderator) -> dict:
    """Counts per status × working group × district, and how long the oldest submitted one waits."""
    async with _runtime(request).transaction() as session:
        return await moderation_service.moderation_counts(session)


@router.get("/moderation/proposals/{proposal_id}", response_model=ModerationView, tags=["moderation"])
async def moderation_view(
    proposal_id: uuid.UUID, request: Request, response: Response, user: Moderator
) -> dict:
    """The proposal with its version (also as ``ETag``, to send back in ``If-Match``) and full history."""
    async with _runtime(request).transaction() as session:
        view = await moderation_service.moderation_view(session, proposal_id)
    response.headers["ETag"] = f'"{view["version"]}"'
    return view


def _version(if_match: str | None) -> int | None:
    """The version named in ``If-Match`` (``"3"``, ``W/"3"`` or ``3``); anything else matches nothing."""
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    # ASCII digits only: "²".isdigit() is true, but int("²") raises.
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else -1


@router.post(
    "/moderation/proposals/{proposal_id}/decision", response_model=ModerationView, tags=["moderation"]
)
async def decide(
    proposal_id: uuid.UUID,
    body: DecisionRequest,
    request: Request,
    response: Response,
    user: Moderator,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict:
    """publish | reject | request_changes | mark_duplicate, on the version named in If-Match (stale: 412,
    missing: 428). The public statement is shown with the proposal and mailed to the author; the
    internal note never leaves the moderation."""
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        view = await moderation_service.decide(
            session, runtime.settings, user.subject, proposal_id, _version(if_match), body
        )
    response.headers["ETag"] = f'"{view["version"]}"'
    return view


@router.post(
    "/moderation/proposals/{proposal_id}/outcome", response_model=ModerationView, tags=["moderation"]
)
async def decide_outcome(
    proposal_id: uuid.UUID,
    body: OutcomeRequest,
    request: Request,
    response: Response,
    user: Moderator,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict:
    """The working group's decision on a published proposal, once (If-Match optional here)."""
    runtime = _runtime(request)
    async with runtime.transaction() as session:
        view = await moderation_service.decide_outcome(
            session, runtime.settings, user.subject, proposal_id, _version(if_match), body
        )
    response.headers["ETag"] = f'"{view["version"]}"'
    return view


@router.get(
    "/reports/council",
    tags=["reports"],
    responses={200: {"content": {"application/json": {}, "text/csv": {}, "text/markdown": {}}}},
)
async def council_report(
    request: Request,
    user: Moderator,
    format: Literal["json", "csv", "md"] = "json",
    part: Literal["proposals", "counts", "measures"] = "proposals",
) -> Response:
    """Per working group and district: counts by status and outcome, then every published proposal with
    its outcome and public statements. CSV (``part=proposals`` or ``counts``) is safe for spreadsheets;
    Markdown escapes every resident's text."""
    async with _runtime(request).transaction() as session:
        data = await service.council_report(session)
        await service.audit(session, user.subject, "report.council.read", "council", {"format": format})
    if format == "csv":
        text = {
            "proposals": report.to_csv,
            "counts": report.counts_to_csv,
            "measures": report.measures_to_csv,
        }[part](data)
        return PlainTextResponse(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="stadtrat-vorschlaege-{part}.csv"'},
        )
    if format == "md":
        return PlainTextResponse(report.to_markdown(data), media_type="text/markdown; charset=utf-8")
    return JSONResponse(data)
