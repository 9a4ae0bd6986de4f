"""The registration form for residents (issue 26): ``GET /v1/registrations/new`` shows it, and a
form-encoded ``POST /v1/registrations`` (routed here by ``api.register``) answers a page — "check your
mail" (202) or the form again with every error at the top and at its field and the typed values (422).

API-layer only: the form's fields become the API's ``RegistrationRequest``, the one use case
(``service.submit_registration``) stores it, with the same rate limits, honeypot and idempotency as a
JSON client (the form's hidden one-time ``form_key`` is its Idempotency-Key). Rendering: ``pages.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import catalog, domain, pages, service
from services.registration.models import idempotency_keys
from services.registration.schemas import RegistrationRequest
from shared import i18n
from shared.http import Problem
from shared.idempotency import form_key, idempotent_answer, new_form_key
from shared.pages import (
    FORM_KEY_SLOT,
    LANGUAGE_NAMES,
    Frame,
    Identity,
    failed_fields,
    form_reused,
    page_cache,
    page_response,
    too_many_requests,
    visitor_language,
)

router = APIRouter(prefix="/v1", tags=["registration"])

# The fields in the order the page shows them (the error summary follows it).
ORDER = (
    "working_group_id",
    "name",
    "email",
    "language",
    "participant_type",
    "organization",
    "district",
    "accessibility_needs",
    "interpretation_language",
    "privacy_consent",
)
_TEXT_FIELDS = ("working_group_id", "name", "email", "language", "participant_type")
_OPTIONAL_FIELDS = ("organization", "district", "interpretation_language", "website")
FORM_FIELDS = frozenset(
    {*_TEXT_FIELDS, *_OPTIONAL_FIELDS, *pages.NEEDS, "needs_other", "privacy_consent", "lang", "form_key"}
)
MAX_FIELDS = len(FORM_FIELDS) + 2


def _frame(request: Request, language: str, working_group_id: str = "") -> Frame:
    settings = request.app.state.runtime.settings
    query = {"working_group_id": working_group_id} if working_group_id else {}
    return Frame(language, Identity.of(settings), pages.NEW, query)


async def _groups(request: Request) -> list[dict[str, Any]]:
    async with request.app.state.runtime.transaction() as conn:
        return await catalog.working_group_views(conn)


@router.get("/registrations/new", response_class=HTMLResponse)
async def registration_form(
    request: Request,
    working_group_id: Annotated[str, Query(max_length=80)] = "",
) -> HTMLResponse:
    """The registration form (a page, in ``lang``, else the browser's language, else German); a known
    ``working_group_id`` is preselected."""
    language = visitor_language(request)

    async def render() -> str:
        groups = await _groups(request)
        chosen = working_group_id if any(g["id"] == working_group_id for g in groups) else ""
        form = {"working_group_id": chosen} if chosen else {}
        return pages.registration_form_page(_frame(request, language, chosen), groups, form, FORM_KEY_SLOT)

    html = await page_cache(request).page(("registration_form", language, working_group_id), render)
    return page_response(html.replace(FORM_KEY_SLOT, new_form_key()))


def request_data(form: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """The API body a form stands for, and the fields wrong already here (unknown names, a language to
    interpret not on the list). Empty optional fields are left out; ticked needs become one text."""
    data: dict[str, Any] = {k: form[k] for k in _TEXT_FIELDS if k in form}
    for name in _OPTIONAL_FIELDS:
        if form.get(name, "").strip():
            data[name] = form[name]
    needs = [label for name, label in pages.NEEDS.items() if form.get(name) == "yes"]
    if form.get("needs_other", "").strip():
        needs.append(form["needs_other"])
    if needs:
        data["accessibility_needs"] = "; ".join(needs)
    data["privacy_consent"] = form.get("privacy_consent") == "yes"
    wrong = {"body" for name in form if name not in FORM_FIELDS}
    if data.get("interpretation_language", "") and data["interpretation_language"] not in pages.INTERPRETERS:
        wrong.add("interpretation_language")
    return data, wrong


async def submit_form(request: Request, form: dict[str, str]) -> HTMLResponse:
    """A form-encoded POST /v1/registrations: the page answering it."""
    runtime = request.app.state.runtime
    lang = form.get("lang", "")
    language = lang if lang in LANGUAGE_NAMES else visitor_language(request)
    frame = _frame(request, i18n.resolve(language), form.get("working_group_id", "")[:80])
    data, wrong = request_data(form)

    async def again(
        fields: set[str], status: int, problem: str = "", fresh_key: bool = False
    ) -> HTMLResponse:
        errors = {f: pages.registration_field_error(frame, f) for f in ORDER if f in fields}
        if fields - set(ORDER):
            problem = problem or pages.registration_field_error(frame, "")
        key = new_form_key() if fresh_key or not form_key(form.get("form_key")) else form["form_key"]
        typed = {k: v for k, v in form.items() if k in FORM_FIELDS and k not in ("form_key", "lang")}
        html = pages.registration_form_page(
            frame, await _groups(request), typed, key, errors=errors, problem=problem
        )
        return page_response(html, status)

    try:
        body = RegistrationRequest.model_validate(data)
    except ValidationError as exc:
        return await again(failed_fields(list(exc.errors())) | wrong, 422)
    if wrong:
        return await again(wrong, 422)
    try:
        request.app.state.rate_limiter(request)
        request.app.state.opt_in_limiter(request)
    except Problem as exc:
        return await again(set(), exc.status, too_many_requests(frame))

    async def submit(conn: AsyncConnection) -> dict[str, Any]:
        registration_id = await service.submit_registration(conn, runtime.settings, runtime.catalog, body)
        return {"id": str(registration_id), "status": "pending_confirmation"}

    try:
        await idempotent_answer(
            runtime.transaction, idempotency_keys, form_key(form.get("form_key")), body, submit
        )
    except domain.OptInMailsPaused:
        return await again(set(), 429, too_many_requests(frame))
    except domain.DomainError as exc:
        return await again(failed_fields(exc.errors or [{"field": exc.field or ""}]), 422)
    except Problem as exc:  # the form's key came back with other values (the back button, then changes)
        if exc.status != 422:
            raise
        return await again(set(), 422, form_reused(frame), fresh_key=True)
    html = pages.registration_sent_page(frame, str(body.email), runtime.settings.confirmation_window_hours)
    return page_response(html, 202)
