"""The office's other pages: measures and their progress with the council report as downloads
(``moderator``), mail — the delivery log of one address, its suppression, erasure requests that came by
letter (``staff``; changes ``admin``) — and the moderators' reusable text blocks."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import EmailStr, TypeAdapter, ValidationError

from services.console import service
from services.console.moderation import forbidden, not_found
from services.console.pages import Visit, backend_of, form_of, render, runtime_of, see_other, visit
from shared.languages import LANGUAGES

router = APIRouter(include_in_schema=False)
EMAIL = TypeAdapter(EmailStr)
MEASURE_STATUSES = ("planned", "in_progress", "done", "dropped")
COUNCIL_DECISIONS = ("adopted", "amended", "rejected")


async def _json(v: Visit, service_name: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    answer = await backend_of(v.request).call(v.caller, service_name, method, path, **kwargs)
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, None


# --- measures --------------------------------------------------------------------------------------------


@router.get("/measures")
async def measures(request: Request) -> Response:
    v = await visit(request)
    if not v.person.may("moderator"):
        return forbidden(v)
    code, page = await _json(v, "proposals", "GET", "/v1/measures")
    groups = await backend_of(request).catalog("registration", "/v1/working-groups")
    return render(
        v,
        v.frame.pgettext("console", "Measures"),
        "measures.html.j2",
        measures=(page or {}).get("items", []) if code == 200 else [],
        available=code == 200,
        groups=groups,
        notice=v.frame.pgettext("console", "Saved.") if request.query_params.get("saved") else None,
        problem=request.query_params.get("problem") == "1",
        statuses=MEASURE_STATUSES,
        decisions=COUNCIL_DECISIONS,
    )


@router.post("/measures")
async def create_measure(request: Request) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    ids = [p.strip() for p in form.get("proposal_ids", "").replace(",", " ").split() if p.strip()]
    body = {
        "working_group_id": form.get("working_group_id", ""),
        "title": form.get("title", "").strip(),
        "description": form.get("description", "").strip(),
        "proposal_ids": ids,
    }
    if form.get("district_id"):
        body["district_id"] = form["district_id"]
    code, _ = await _json(v, "proposals", "POST", "/v1/measures", json=body)
    return _after(v, code, "/measures")


@router.post("/measures/{measure_id}/{action}")
async def measure_action(request: Request, measure_id: uuid.UUID, action: str) -> Response:
    """The council's decision (once) or a step of progress on a measure."""
    v = await visit(request)
    form = await form_of(request, v)
    if action == "council-decision":
        body = {
            "decided_on": form.get("decided_on", ""),
            "reference": form.get("reference", "").strip(),
            "decision": form.get("decision", ""),
            "public_statement": form.get("public_statement", "").strip(),
        }
    elif action == "progress":
        body = {
            "status": form.get("status", ""),
            "on": form.get("on") or date.today().isoformat(),
            "public_statement": form.get("public_statement", "").strip(),
        }
    else:
        return not_found(v)
    code, _ = await _json(v, "proposals", "POST", f"/v1/measures/{measure_id}/{action}", json=body)
    return _after(v, code, "/measures")


def _after(v: Visit, code: int, path: str) -> Response:
    if code == 403:
        return forbidden(v)
    return see_other(f"{path}?{'saved' if code in (200, 201, 202) else 'problem'}=1")


@router.get("/reports/council.{extension}")
async def council_report(request: Request, extension: str) -> Response:
    """The council report as a download (CSV for spreadsheets, Markdown), fetched with the person's token."""
    v = await visit(request)
    if extension not in ("csv", "md") or not v.person.may("moderator"):
        return forbidden(v)
    answer = await backend_of(request).call(
        v.caller, "proposals", "GET", "/v1/reports/council", params={"format": extension}
    )
    if answer.status_code != 200:
        return forbidden(v) if answer.status_code == 403 else not_found(v)
    return Response(
        answer.content,
        media_type=answer.headers.get("content-type", "text/plain"),
        headers={
            "Content-Disposition": f'attachment; filename="stadtrat-vorschlaege.{extension}"',
            "Cache-Control": "no-store",
        },
    )


# --- mail ------------------------------------------------------------------------------------------------


@router.get("/mail")
async def mail_page(request: Request) -> Response:
    v = await visit(request)
    if not v.person.may("staff"):
        return forbidden(v)
    return await _mail(v)


async def _mail(
    v: Visit, status_code: int = 200, address: str = "", message: str | None = None, ok: bool = True
) -> Response:
    deliveries: list[dict] | None = None
    suppression: dict | None = None
    if address:
        code, deliveries = await _json(
            v, "notification", "GET", "/v1/deliveries", params={"recipient": address, "limit": 100}
        )
        if code == 403:
            return forbidden(v)
        _, suppression = await _json(
            v, "notification", "GET", "/v1/suppressions", params={"address": address}
        )
    code, failed = await _json(
        v, "notification", "GET", "/v1/deliveries", params={"status": "bounced", "limit": 50}
    )
    return render(
        v,
        v.frame.pgettext("console", "Mail"),
        "mail.html.j2",
        status_code,
        address=address,
        deliveries=deliveries,
        suppression=suppression,
        bounced=failed if code == 200 else [],
        message=message,
        ok=ok,
    )


def _address(value: str) -> str | None:
    try:
        return str(EMAIL.validate_python(value.strip()))
    except ValidationError:
        return None


@router.post("/mail")
async def mail_search(request: Request) -> Response:
    """The delivery log of one address. A POST, so that the address is in no URL (nor in access logs)."""
    v = await visit(request)
    form = await form_of(request, v)
    if not v.person.may("staff"):
        return forbidden(v)
    address = _address(form.get("address", ""))
    if address is None:
        return await _mail(
            v, 422, message=v.frame.pgettext("console", "Enter a complete e-mail address."), ok=False
        )
    action = form.get("action", "search")
    if action == "lift" and v.person.may("admin"):
        code, _ = await _json(v, "notification", "DELETE", f"/v1/suppressions/{address}")
        text = (
            v.frame.pgettext("console", "Mail may go to this address again.")
            if code == 200
            else v.frame.pgettext("console", "Not changed.")
        )
        return await _mail(v, 200 if code == 200 else 409, address, text, code == 200)
    return await _mail(v, address=address)


@router.post("/mail/erasures")
async def erasure_by_letter(request: Request) -> Response:
    """An erasure that came by letter (``admin``): audited by the registration service with the reference."""
    v = await visit(request)
    form = await form_of(request, v)
    if not v.person.may("admin"):
        return forbidden(v)
    address = _address(form.get("email", ""))
    reference = form.get("reference", "").strip()[:200]
    if address is None or not reference:
        return await _mail(
            v,
            422,
            message=v.frame.pgettext("console", "Enter the address and the letter's reference."),
            ok=False,
        )
    code, data = await _json(
        v, "registration", "POST", "/v1/privacy/erasures", json={"email": address, "reference": reference}
    )
    if code == 202:
        return await _mail(
            v,
            200,
            message=v.frame.pgettext("console", "Erasure started (request %(id)s).", id=data["request_id"]),
        )
    return await _mail(v, 409, message=v.frame.pgettext("console", "Not changed."), ok=False)


# --- text blocks -------------------------------------------------------------------------------------------


@router.get("/text-blocks")
async def text_blocks(request: Request) -> Response:
    v = await visit(request)
    if not v.person.may("moderator"):
        return forbidden(v)
    async with runtime_of(request).transaction() as conn:
        blocks = await service.text_blocks(conn)
    return render(
        v,
        v.frame.pgettext("console", "Text blocks"),
        "text_blocks.html.j2",
        blocks=blocks,
        languages=LANGUAGES,
        notice=v.frame.pgettext("console", "Saved.") if request.query_params.get("saved") else None,
        problem=request.query_params.get("problem") == "1",
    )


@router.post("/text-blocks")
async def add_text_block(request: Request) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    if not v.person.may("moderator"):
        return forbidden(v)
    language, title, body = (
        form.get("language", ""),
        form.get("title", "").strip(),
        form.get("body", "").strip(),
    )
    if language not in LANGUAGES or not title or not body or len(title) > 120 or len(body) > 2000:
        return see_other("/text-blocks?problem=1")
    async with runtime_of(request).transaction() as conn:
        await service.add_text_block(conn, v.person.subject, language, title, body)
    return see_other("/text-blocks?saved=1")


@router.post("/text-blocks/{block_id}/delete")
async def delete_text_block(request: Request, block_id: uuid.UUID) -> Response:
    v = await visit(request)
    await form_of(request, v)
    if not v.person.may("moderator"):
        return forbidden(v)
    async with runtime_of(request).transaction() as conn:
        await service.remove_text_block(conn, block_id)
    return see_other("/text-blocks?saved=1")
