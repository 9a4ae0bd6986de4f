"""Staff use cases: the participant list and planning figures (both audited reads), changes of capacity
and meetings (each told to the participants), and the meeting reminders. Each runs inside the caller's
unit of work and never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain
from services.registration import repository as repo
from services.registration.catalog import (
    NO_WORKING_GROUP,
    CatalogCache,
    meeting_info,
    publish_working_group,
    working_group_view,
)
from services.registration.config import RegistrationSettings
from services.registration.models import outbox
from services.registration.service import Links, audit, promote_from_waitlist, recipient_of
from shared import events as ev
from shared.outbox import add_event
from shared.tokens import token_for

# --- participants and planning ---------------------------------------------------------------------------


async def participant_list(
    conn: AsyncConnection, wg_id: str, reader: str, fields: Sequence[str], format: str
) -> list[dict[str, Any]]:
    """Confirmed participants, then the waitlist in order (numbered); the read is audited."""
    if await repo.get_working_group(conn, wg_id) is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    rows = await repo.participants(conn, wg_id)
    # Reading personal data is a staff action too: it goes into the audit log.
    await audit(conn, reader, "participants.read", wg_id, {"format": format})
    people = []
    position = 0
    for row in rows:
        person = {field: getattr(row, field, None) for field in fields if field != "waitlist_position"}
        if row.status == "waitlisted":
            position += 1
            person["waitlist_position"] = position
        people.append(person)
    return people


def _tally(values: Any) -> dict[str, int]:
    result: dict[str, int] = {}
    for value in values:
        result[value] = result.get(value, 0) + 1
    return dict(sorted(result.items()))


async def planning_figures(conn: AsyncConnection, wg_id: str, reader: str) -> dict[str, Any]:
    """Planning figures per meeting: confirmed and waitlisted counts by type, district, language,
    interpretation language and accessibility needs (a registration covers both meetings)."""
    view = await working_group_view(conn, wg_id)
    rows = await repo.participants(conn, wg_id)
    # The figures include accessibility needs (health data, Art. 9 GDPR): the read is audited.
    await audit(conn, reader, "planning.read", wg_id, {})
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


# --- capacity and meetings --------------------------------------------------------------------------


async def change_working_group(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    wg_id: str,
    *,
    capacity: int | None,
    expert_reserved: int | None,
    now: datetime | None = None,
) -> int:
    """Change capacity or the expert reservation; more room promotes from the waitlist. Returns promotions."""
    now = now or datetime.now(UTC)
    wg = await repo.lock_working_group(conn, wg_id)
    if wg is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    new_capacity = wg.capacity if capacity is None else capacity
    new_reserved = wg.expert_reserved if expert_reserved is None else expert_reserved
    domain.check_capacity(new_capacity, new_reserved)
    await repo.update_capacity(conn, wg_id, new_capacity, new_reserved, now)
    group = replace(repo.group_counters(wg), capacity=new_capacity, expert_reserved=new_reserved)
    promoted = await promote_from_waitlist(conn, settings, catalog, group, now)
    await publish_working_group(conn, wg_id, changed=True)
    catalog.invalidate(wg_id)
    return promoted


async def change_meeting(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    wg_id: str,
    number: int,
    changes: dict[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Change a meeting's date, venue or address, or cancel it; every confirmed participant is told."""
    now = now or datetime.now(UTC)
    wg = await repo.lock_working_group(conn, wg_id)
    if wg is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    before = await repo.meeting(conn, wg_id, number, for_update=True)
    if before is None:
        raise domain.NotFound("There is no meeting with this number.")
    values = {k: v for k, v in changes.items() if v is not None or k in ("starts_at", "ends_at")}
    domain.check_meeting_times(
        values.get("starts_at", before.starts_at), values.get("ends_at", before.ends_at)
    )
    if not values:
        return {"number": before.number}
    await repo.update_meeting(conn, wg_id, number, values, before.sequence + 1, now)
    after = await repo.meeting(conn, wg_id, number)
    assert after is not None
    participants = await _confirmed_participants(conn, settings, wg_id)
    info = ev.WorkingGroupInfo(id=wg.id, title=wg.title)
    if after.cancelled and not before.cancelled:
        await add_event(
            conn,
            outbox,
            ev.MeetingCancelled(working_group=info, meeting=meeting_info(after), participants=participants),
        )
    elif not after.cancelled:
        await add_event(
            conn,
            outbox,
            ev.MeetingRescheduled(
                working_group=info,
                meeting=meeting_info(after),
                previous=meeting_info(before),
                participants=participants,
            ),
        )
    await publish_working_group(conn, wg_id, changed=True)
    catalog.invalidate(wg_id)
    return {"number": after.number}


async def _confirmed_participants(
    conn: AsyncConnection, settings: RegistrationSettings, wg_id: str, *, reminder: bool = False
) -> list[ev.Participant]:
    """Confirmed participants, each with their self-service links. For a reminder: only those who did not
    stop reminders, each with the one-click unsubscribe link (RFC 8058) that stops them."""
    participants = []
    for row in await repo.confirmed_registrations(conn, wg_id):
        links = Links.of(settings, row.id)
        if reminder:
            if row.reminders_stopped_at is not None:
                continue
            token = token_for(settings.token_secret, row.id)
            links = links.model_copy(
                update={
                    "unsubscribe_url": f"{settings.public_url}/v1/registrations/unsubscribe?token={token}"
                }
            )
        participants.append(ev.Participant(registration_id=row.id, recipient=recipient_of(row), links=links))
    return participants


# --- reminders ------------------------------------------------------------------------------------------


async def send_due_reminders(
    conn: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
) -> int:
    """Emit ``meeting.reminder_due`` once per meeting date, however many replicas run this job.

    Per due meeting: lock the working group (the lock order of every other change: group first), then
    claim the meeting with one conditional UPDATE that sets ``reminder_sent_for`` to its date; a replica
    that comes second re-checks the condition and matches nothing. Participants are read under the group
    lock, so someone cancelling right now is either reminded before or not at all. A rescheduled meeting
    has a new date, so its participants are reminded of the new one.
    """
    now = now or datetime.now(UTC)
    lead = timedelta(hours=settings.reminder_lead_hours)
    sent = 0
    for candidate in await repo.meetings_due_for_reminder(conn, now, lead):
        wg = await repo.lock_working_group(conn, candidate.working_group_id)
        meeting_row = await repo.claim_reminder(conn, candidate.working_group_id, candidate.number, now, lead)
        if wg is None or meeting_row is None:
            continue
        sent += 1
        participants = await _confirmed_participants(conn, settings, wg.id, reminder=True)
        if participants:
            await add_event(
                conn,
                outbox,
                ev.MeetingReminderDue(
                    working_group=ev.WorkingGroupInfo(id=wg.id, title=wg.title),
                    meeting=meeting_info(meeting_row),
                    participants=participants,
                ),
            )
    return sent
