"""A working group for staff: participants (``staff``), planning figures, capacity and meeting changes
(``admin``), and the check-in page at the door (``staff``; the attendance API of "After the meetings")."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console.moderation import SLUG_CHARS, forbidden, not_found
from services.console.pages import Visit, backend_of, form_of, render, see_other, visit

router = APIRouter(include_in_schema=False)
BERLIN = ZoneInfo("Europe/Berlin")
PARTICIPANT_TYPES = ("resident", "expert", "organization")
LANGUAGES = ("de", "en", "tr", "ru", "ar", "uk")


def _ok_slug(value: str) -> bool:
    return 0 < len(value) <= 80 and set(value) <= SLUG_CHARS


async def _get(v: Visit, service: str, path: str, **params: Any) -> tuple[int, Any]:
    answer = await backend_of(v.request).call(v.caller, service, "GET", path, params=params)
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, None


@router.get("/groups/{group_id}")
async def group_page(request: Request, group_id: str) -> Response:
    v = await visit(request)
    if not v.person.may("staff"):
        return forbidden(v)
    if not _ok_slug(group_id):
        return not_found(v)
    (code, group), (p_code, people), (_, planning) = await asyncio.gather(
        _get(v, "registration", f"/v1/working-groups/{group_id}"),
        _get(v, "registration", f"/v1/working-groups/{group_id}/participants"),
        _get(v, "registration", f"/v1/working-groups/{group_id}/planning"),
    )
    if p_code == 403:
        return forbidden(v)
    if code != 200:
        return not_found(v)
    notice = v.frame.pgettext("console", "Saved.") if request.query_params.get("saved") else None
    return render(
        v,
        group["title"],
        "group.html.j2",
        group=group,
        people=people or [],
        planning=planning,
        notice=notice,
        problem=request.query_params.get("problem") == "1",
        local=_local_input,
    )


def _local_input(value: str | None) -> str:
    """A meeting's time for an ``<input type="datetime-local">``, in Berlin time."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")


def _aware(value: str) -> str | None:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=BERLIN).isoformat() if value else None
    except ValueError:
        return None


@router.post("/groups/{group_id}/capacity")
async def change_capacity(request: Request, group_id: str) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    if not v.person.may("admin"):
        return forbidden(v)
    capacity = form.get("capacity", "")
    if not _ok_slug(group_id) or not (capacity.isascii() and capacity.isdigit() and len(capacity) < 6):
        return see_other(f"/groups/{group_id}?problem=1")
    answer = await backend_of(request).call(
        v.caller, "registration", "PATCH", f"/v1/working-groups/{group_id}", json={"capacity": int(capacity)}
    )
    return see_other(f"/groups/{group_id}?{'saved' if answer.status_code == 200 else 'problem'}=1")


@router.post("/groups/{group_id}/meetings/{number}")
async def change_meeting(request: Request, group_id: str, number: int) -> Response:
    v = await visit(request)
    form = await form_of(request, v)
    if not v.person.may("admin"):
        return forbidden(v)
    body: dict[str, Any] = {
        "starts_at": _aware(form.get("starts_at", "")),
        "ends_at": _aware(form.get("ends_at", "")),
        "venue": form.get("venue", "").strip(),
        "address": form.get("address", "").strip(),
        "cancelled": form.get("cancelled") == "1",
    }
    body = {k: val for k, val in body.items() if val is not None}
    if not _ok_slug(group_id) or not 1 <= number <= 20:
        return not_found(v)
    answer = await backend_of(request).call(
        v.caller, "registration", "PATCH", f"/v1/working-groups/{group_id}/meetings/{number}", json=body
    )
    return see_other(f"/groups/{group_id}?{'saved' if answer.status_code == 200 else 'problem'}=1")


# --- check-in at the door ------------------------------------------------------------------------------


@router.get("/groups/{group_id}/meetings/{number}/check-in")
async def check_in_page(request: Request, group_id: str, number: int) -> Response:
    v = await visit(request)
    if not v.person.may("staff"):
        return forbidden(v)
    if not _ok_slug(group_id) or not 1 <= number <= 20:
        return not_found(v)
    return await _check_in(v, group_id, number)


async def _check_in(
    v: Visit, group_id: str, number: int, status_code: int = 200, message: str | None = None, ok: bool = True
) -> Response:
    (code, group), (p_code, people), (a_code, attendance) = await asyncio.gather(
        _get(v, "registration", f"/v1/working-groups/{group_id}"),
        _get(v, "registration", f"/v1/working-groups/{group_id}/participants"),
        _get(v, "registration", f"/v1/working-groups/{group_id}/meetings/{number}/attendance"),
    )
    if p_code == 403:
        return forbidden(v)
    if code != 200:
        return not_found(v)
    # The attendance list (API.md "After the meetings"): everyone registered, each with "present".
    entries = (attendance or {}).get("entries", []) if a_code == 200 else []
    present = {str(e.get("registration_id")) for e in entries if e.get("present")}
    return render(
        v,
        v.frame.pgettext(
            "console", "Check-in: %(group)s, meeting %(number)s", group=group["title"], number=number
        ),
        "check_in.html.j2",
        status_code,
        group=group,
        number=number,
        people=[p for p in (people or []) if p.get("status") == "confirmed"],
        present=present,
        counts=(attendance or {}).get("counts") if a_code == 200 else None,
        message=message,
        ok=ok,
        participant_types=PARTICIPANT_TYPES,
        languages=LANGUAGES,
    )


@router.post("/groups/{group_id}/meetings/{number}/check-in")
async def check_in(request: Request, group_id: str, number: int) -> Response:
    """One person at the door: by their code, by their name in the list, or as a walk-in."""
    v = await visit(request)
    form = await form_of(request, v)
    if not v.person.may("staff"):
        return forbidden(v)
    if not _ok_slug(group_id) or not 1 <= number <= 20:
        return not_found(v)
    if form.get("registration_id"):
        body: dict[str, Any] = {"registration_id": form["registration_id"]}
    elif form.get("check_in_code", "").strip():
        body = {"check_in_code": form["check_in_code"].strip().upper()[:40]}
    elif form.get("walk_in") == "1":
        body = {
            "walk_in": {
                "participant_type": form.get("participant_type", ""),
                "language": form.get("language", ""),
            }
        }
    else:
        return await _check_in(
            v,
            group_id,
            number,
            422,
            v.frame.pgettext("console", "Enter a code, choose a name or record a walk-in."),
            False,
        )
    answer = await backend_of(request).call(
        v.caller,
        "registration",
        "POST",
        f"/v1/working-groups/{group_id}/meetings/{number}/attendance",
        json=body,
    )
    if answer.status_code == 403:
        return forbidden(v)
    if answer.status_code == 200:
        return await _check_in(v, group_id, number, 200, v.frame.pgettext("console", "Checked in."), True)
    if answer.status_code == 422:
        return await _check_in(
            v,
            group_id,
            number,
            422,
            v.frame.pgettext(
                "console", "Not checked in: this code or registration is not valid for this meeting."
            ),
            False,
        )
    return await _check_in(
        v,
        group_id,
        number,
        409,
        v.frame.pgettext("console", "Not checked in: the service did not accept it."),
        False,
    )
