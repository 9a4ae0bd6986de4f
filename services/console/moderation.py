"""The moderation pages: the queue (filters, keyset pages), one proposal with its history, the decision
and outcome forms. The version the moderator read travels as a hidden field into ``If-Match``: when
another moderator decided first (412), the page shows what they did and lets this one decide again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console import domain, service
from services.console.pages import Visit, backend_of, form_of, render, runtime_of, see_other, visit

router = APIRouter(include_in_schema=False)
SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _slug(value: str | None) -> str | None:
    return value if value and len(value) <= 80 and set(value) <= SLUG_CHARS else None


def error_text(v: Visit, code: str) -> str:
    texts = {
        "choose_decision": v.frame.pgettext("console", "Choose a decision."),
        "text_block_gone": v.frame.pgettext("console", "This text block does not exist any more."),
        "statement_owed": v.frame.pgettext(
            "console", "The author is owed a reason: write one or choose a text block."
        ),
        "too_long": v.frame.pgettext("console", "At most 2000 characters."),
        "choose_original": v.frame.pgettext("console", "Choose the original proposal."),
        "choose_outcome": v.frame.pgettext("console", "Choose an outcome."),
        "reason_owed": v.frame.pgettext("console", "Say why it was not adopted."),
    }
    return texts.get(code, code)


def labels(v: Visit) -> dict[str, str]:
    """Words for the services' codes (statuses, decisions, outcomes, history actions)."""
    return {
        "submitted": v.frame.pgettext("console", "waiting for moderation"),
        "changes_requested": v.frame.pgettext("console", "changes requested"),
        "published": v.frame.pgettext("console", "published"),
        "rejected": v.frame.pgettext("console", "rejected"),
        "merged": v.frame.pgettext("console", "merged into another proposal"),
        "withdrawn": v.frame.pgettext("console", "withdrawn"),
        "publish": v.frame.pgettext("console", "Publish"),
        "reject": v.frame.pgettext("console", "Reject"),
        "request_changes": v.frame.pgettext("console", "Request changes"),
        "mark_duplicate": v.frame.pgettext("console", "Mark as duplicate"),
        "adopted": v.frame.pgettext("console", "adopted"),
        "partially_adopted": v.frame.pgettext("console", "partially adopted"),
        "not_adopted": v.frame.pgettext("console", "not adopted"),
    }


async def _catalog(v: Visit) -> tuple[list[dict], list[dict]]:
    backend = backend_of(v.request)
    return await asyncio.gather(
        backend.catalog("registration", "/v1/working-groups"), backend.catalog("proposals", "/v1/districts")
    )


@router.get("/moderation")
async def queue(request: Request) -> Response:
    v = await visit(request)
    if not v.person.may("moderator"):
        return forbidden(v)
    q = request.query_params
    status = q.get("status") if q.get("status") in domain.STATUSES else "submitted"
    filters = {
        "status": status,
        "working_group_id": _slug(q.get("working_group_id")),
        "district_id": _slug(q.get("district_id")),
    }
    params: dict[str, Any] = {k: val for k, val in filters.items() if val}
    cursor = q.get("cursor")
    if cursor and len(cursor) <= 200:
        params["cursor"] = cursor
    params["limit"] = 25
    answer, (groups, districts) = await asyncio.gather(
        backend_of(request).call(v.caller, "proposals", "GET", "/v1/moderation/queue", params=params),
        _catalog(v),
    )
    if answer.status_code == 403:
        return forbidden(v)
    page = answer.json() if answer.status_code == 200 else {"items": [], "next_cursor": None}
    next_params = {k: val for k, val in filters.items() if val}
    return render(
        v,
        v.frame.pgettext("console", "Moderation"),
        "queue.html.j2",
        page=page,
        filters=filters,
        groups=groups,
        districts=districts,
        statuses=domain.STATUSES,
        labels=labels(v),
        first_href="/moderation?" + urlencode(next_params) if cursor else None,
        next_href=(
            "/moderation?" + urlencode({**next_params, "cursor": page["next_cursor"]})
            if page.get("next_cursor")
            else None
        ),
    )


def forbidden(v: Visit) -> Response:
    return render(
        v,
        v.frame.pgettext("console", "Not allowed"),
        "message.html.j2",
        403,
        lines=[v.frame.pgettext("console", "Your roles do not open this page.")],
    )


def not_found(v: Visit) -> Response:
    return render(
        v,
        v.frame.pgettext("console", "Not found"),
        "message.html.j2",
        404,
        lines=[v.frame.pgettext("console", "There is nothing at this address.")],
    )


async def _proposal(v: Visit, proposal_id: uuid.UUID) -> tuple[int, dict | None]:
    answer = await backend_of(v.request).call(
        v.caller, "proposals", "GET", f"/v1/moderation/proposals/{proposal_id}"
    )
    return answer.status_code, (answer.json() if answer.status_code == 200 else None)


async def _detail(
    v: Visit,
    proposal_id: uuid.UUID,
    status_code: int = 200,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    conflict_since: int | None = None,
    problem: str | None = None,
    notice: str | None = None,
) -> Response:
    code, proposal = await _proposal(v, proposal_id)
    if code == 403:
        return forbidden(v)
    if proposal is None:
        return not_found(v)
    async with runtime_of(v.request).transaction() as conn:
        blocks = await service.text_blocks(conn, proposal["language"])
    query = (v.request.query_params.get("q") or "").strip()[:200]
    found: list[dict] = []
    if query:
        answer = await backend_of(v.request).public(
            "proposals", "/v1/proposals", params={"q": query, "limit": 10}
        )
        if answer.status_code == 200:
            found = [p for p in answer.json()["items"] if p["id"] != str(proposal_id)]
    changes = []
    if conflict_since is not None:
        changes = [h for h in proposal["history"] if h["version"] > conflict_since]
    return render(
        v,
        proposal["title"],
        "proposal.html.j2",
        status_code,
        proposal=proposal,
        labels=labels(v),
        blocks=blocks,
        form=form or {},
        errors={k: error_text(v, c) for k, c in (errors or {}).items()},
        conflict=conflict_since is not None,
        changes=changes,
        problem=problem,
        notice=notice,
        query=query,
        found=found,
    )


@router.get("/moderation/{proposal_id}")
async def proposal_page(request: Request, proposal_id: uuid.UUID) -> Response:
    v = await visit(request)
    if not v.person.may("moderator"):
        return forbidden(v)
    saved = request.query_params.get("saved")
    return await _detail(v, proposal_id, notice=v.frame.pgettext("console", "Saved.") if saved else None)


@router.post("/moderation/{proposal_id}/decision")
async def decide(request: Request, proposal_id: uuid.UUID) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    async with runtime_of(request).transaction() as conn:
        blocks = {str(b["id"]): b["body"] for b in await service.text_blocks(conn)}
    result = domain.decision_from_form(form, blocks)
    version = domain.version_from_form(form)
    if not result.ok:
        return await _detail(v, proposal_id, 422, form=form, errors=result.errors)
    return await _answer(
        v, proposal_id, form, await _call(v, proposal_id, "decision", result.body, version), version
    )


@router.post("/moderation/{proposal_id}/outcome")
async def outcome(request: Request, proposal_id: uuid.UUID) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    result = domain.outcome_from_form(form)
    version = domain.version_from_form(form)
    if not result.ok:
        return await _detail(v, proposal_id, 422, form=form, errors=result.errors)
    return await _answer(
        v, proposal_id, form, await _call(v, proposal_id, "outcome", result.body, version), version
    )


async def _call(
    v: Visit, proposal_id: uuid.UUID, kind: str, body: dict, version: int | None
) -> tuple[int, dict]:
    headers = {"If-Match": f'"{version}"'} if version is not None else {}
    answer = await backend_of(v.request).call(
        v.caller,
        "proposals",
        "POST",
        f"/v1/moderation/proposals/{proposal_id}/{kind}",
        json=body,
        headers=headers,
    )
    try:
        data = answer.json()
    except ValueError:
        data = {}
    return answer.status_code, data


async def _answer(
    v: Visit, proposal_id: uuid.UUID, form: dict[str, str], answer: tuple[int, dict], version: int | None
) -> Response:
    status, data = answer
    if status == 200:
        return see_other(f"/moderation/{proposal_id}?saved=1")
    if status == 403:
        return forbidden(v)
    if status == 404:
        return not_found(v)
    if status in (412, 428):
        # Another moderator was first: show what they did; the form keeps what this one wrote.
        return await _detail(v, proposal_id, 409, form=form, conflict_since=version or 0)
    if status == 422:
        fields = {e.get("field", "").split(".")[-1]: e.get("message", "") for e in data.get("errors", [])}
        detail = data.get("detail") or v.frame.pgettext("console", "The service did not accept this.")
        return await _detail(
            v,
            proposal_id,
            422,
            form=form,
            problem=detail + (f" ({', '.join(f for f in fields if f)})" if fields else ""),
        )
    return await _detail(
        v,
        proposal_id,
        409,
        form=form,
        problem=data.get("detail") or v.frame.pgettext("console", "This is not possible now."),
    )
