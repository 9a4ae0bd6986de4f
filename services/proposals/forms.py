"""The proposal form and the published proposals for residents (issue 26): ``GET /v1/proposals/new``
shows the form; a form-encoded ``POST /v1/proposals`` (routed here by ``api.submit``) answers a page —
what pre-moderation means (202) or the form again with every error and the typed values (422); a
browser asking for ``/v1/proposals`` gets the list page (``api.list_published``).

API-layer only: the form's fields become the API's ``ProposalRequest`` and the one use case
(``service.submit_proposal``) stores it, with the same rate limits, honeypot and idempotency as a JSON
client (the hidden one-time ``form_key`` is its Idempotency-Key). Rendering: ``pages.py``. The one script
(the live character count) is served here from ``shared/static``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import author_service, domain, pages, public_service, service
from services.proposals.models import idempotency_keys
from services.proposals.schemas import ProposalRequest
from shared import i18n
from shared.http import Problem
from shared.idempotency import form_key, idempotent_answer, new_form_key
from shared.pages import (
    FORM_KEY_SLOT,
    LANGUAGE_NAMES,
    SCRIPT_FILE,
    SCRIPT_PATH,
    Frame,
    Identity,
    failed_fields,
    form_reused,
    page_cache,
    page_csp,
    page_response,
    too_many_requests,
    visitor_language,
)

router = APIRouter(prefix="/v1", tags=["proposals"])

ORDER = ("working_group_id", "district_id", "title", "body", "language", "author_name", "author_email",
         "privacy_consent")  # fmt: skip
_OPTIONAL_FIELDS = ("district_id", "author_name", "author_email", "website")
FORM_FIELDS = frozenset({*ORDER, "website", "lang", "form_key"})
MAX_FIELDS = len(FORM_FIELDS) + 2
_SCRIPT = SCRIPT_FILE.read_bytes()


def _settings(request: Request) -> Any:
    return request.app.state.runtime.settings


def _frame(request: Request, language: str, path: str, query: dict[str, str] | None = None) -> Frame:
    return Frame(language, Identity.of(_settings(request)), path, query or {})


def _csp(request: Request) -> str:
    """The form's policy: the service's, plus its own script file."""
    return page_csp(_settings(request).frame_ancestors, scripts=True)


async def _choices(request: Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with request.app.state.runtime.transaction() as session:
        return await service.working_groups(session), await service.list_districts(session)


@router.get(SCRIPT_PATH.removeprefix("/v1"), include_in_schema=False)
async def script() -> Response:
    return Response(
        _SCRIPT,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/proposals/new", response_class=HTMLResponse)
async def proposal_form(
    request: Request, working_group_id: Annotated[str, Query(max_length=80)] = ""
) -> HTMLResponse:
    """The proposal form (a page, in ``lang``, else the browser's language, else German); a known
    ``working_group_id`` is preselected."""
    language = visitor_language(request)

    async def render() -> str:
        groups, districts = await _choices(request)
        chosen = working_group_id if any(g["id"] == working_group_id for g in groups) else ""
        query = {"working_group_id": chosen} if chosen else {}
        form = {"working_group_id": chosen} if chosen else {}
        frame = _frame(request, language, pages.NEW, query)
        return pages.proposal_form_page(frame, groups, districts, form, FORM_KEY_SLOT)

    html = await page_cache(request).page(("proposal_form", language, working_group_id), render)
    return page_response(html.replace(FORM_KEY_SLOT, new_form_key()), csp=_csp(request))


def request_data(form: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """The API body a form stands for (empty optional fields left out), and unknown field names."""
    data: dict[str, Any] = {
        k: form[k] for k in ("working_group_id", "title", "body", "language") if k in form
    }
    for name in _OPTIONAL_FIELDS:
        if form.get(name, "").strip():
            data[name] = form[name]
    data["privacy_consent"] = form.get("privacy_consent") == "yes"
    return data, {"body" for name in form if name not in FORM_FIELDS}


async def submit_form(request: Request, form: dict[str, str]) -> HTMLResponse:
    """A form-encoded POST /v1/proposals: the page answering it."""
    runtime = request.app.state.runtime
    lang = form.get("lang", "")
    frame = _frame(
        request, i18n.resolve(lang if lang in LANGUAGE_NAMES else visitor_language(request)), pages.NEW
    )
    data, wrong = request_data(form)

    async def again(
        fields: set[str], status: int, problem: str = "", fresh_key: bool = False
    ) -> HTMLResponse:
        errors = {f: pages.proposal_field_error(frame, f) for f in ORDER if f in fields}
        if fields - set(ORDER):
            problem = problem or pages.invalid_form(frame)
        key = new_form_key() if fresh_key or not form_key(form.get("form_key")) else form["form_key"]
        typed = {k: v for k, v in form.items() if k in FORM_FIELDS and k not in ("form_key", "lang")}
        groups, districts = await _choices(request)
        html = pages.proposal_form_page(frame, groups, districts, typed, key, errors=errors, problem=problem)
        return page_response(html, status, csp=_csp(request))

    try:
        body = ProposalRequest.model_validate(data)
    except ValidationError as exc:
        return await again(failed_fields(list(exc.errors())) | wrong, 422)
    if wrong:
        return await again(wrong, 422)
    try:
        request.app.state.rate_limiter(request)
        request.app.state.intake_limiter(request)
    except Problem as exc:
        return await again(set(), exc.status, too_many_requests(frame))

    async def work(session: AsyncConnection) -> dict[str, Any]:
        if body.website:  # the honeypot: a bot; answered alike, nothing stored or sent
            return {"id": str(uuid.uuid4()), "status": "submitted"}
        return await author_service.submit_proposal(session, runtime.settings, body)

    try:
        await idempotent_answer(
            runtime.transaction, idempotency_keys, form_key(form.get("form_key")), body, work
        )
    except domain.DomainError as exc:
        return await again({getattr(exc, "field", None) or "body"}, 422)
    except Problem as exc:  # the form's key came back with other values
        if exc.status != 422:
            raise
        return await again(set(), 422, form_reused(frame), fresh_key=True)
    return page_response(pages.proposal_sent_page(frame, body.author_email is not None), 202)


async def published_list(
    request: Request, filters: dict[str, str], after: Any, cursor: str, limit: int
) -> HTMLResponse:
    """The list page of ``GET /v1/proposals`` for a browser (the same query as the JSON answer)."""
    language = visitor_language(request)

    async def render() -> str:
        async with request.app.state.runtime.transaction() as session:
            page = await public_service.published_page(
                session,
                working_group_id=filters.get("working_group_id") or None,
                district_id=filters.get("district_id") or None,
                q=filters.get("q") or None,
                after=after,
                limit=limit,
            )
        groups, districts = await _choices(request)
        switch = {**filters, **({"cursor": cursor} if cursor else {})}
        frame = _frame(request, language, pages.PUBLISHED, switch)
        return pages.published_list_page(frame, page, groups, districts, filters)

    key = ("published", language, tuple(sorted(filters.items())), cursor, limit)
    return page_response(await page_cache(request).page(key, render))
