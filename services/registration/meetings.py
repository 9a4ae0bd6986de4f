"""Use cases after the meetings (issue 24): checking people in at the door, counting walk-ins, the
printable attendance list, and the minutes with their versions. Each runs inside the caller's unit of work
and never commits; the rules are in ``domain`` (the section "After the meetings"), the queries in
``repository`` (the section of the same name). Every check-in publishes ``meeting.attendance_counted`` and
every published version of the minutes ``meeting.minutes_published``, through the one outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain, service
from services.registration import repository as repo
from services.registration.config import RegistrationSettings
from services.registration.models import outbox
from shared import events as ev
from shared.outbox import add_event

NO_WORKING_GROUP = "There is no working group with this id."
NO_MEETING = "There is no such meeting."
NO_MINUTES = "There are no published minutes for this meeting."


async def _meeting(
    conn: AsyncConnection, catalog: service.CatalogCache, wg_id: str, number: int
) -> tuple[ev.WorkingGroupInfo, ev.MeetingInfo]:
    entry = await catalog.get(conn, wg_id)
    if entry is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    working_group, meetings = entry
    for meeting in meetings:
        if meeting.number == number:
            return working_group, meeting
    raise domain.NotFound(NO_MEETING)


def _entry(row: Any, registration: Any, repeated: bool) -> dict[str, Any]:
    return {
        "registration_id": row.registration_id,
        "name": registration.name,
        "check_in_code": domain.display_check_in_code(registration.check_in_code),
        "meeting": row.meeting_number,
        "checked_in_at": row.checked_in_at,
        "repeated": repeated,
    }


async def check_in(
    conn: AsyncConnection,
    catalog: service.CatalogCache,
    wg_id: str,
    number: int,
    staff: str,
    *,
    registration_id: uuid.UUID | None = None,
    check_in_code: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check a registration in by its id or its code. A second check-in answers the first entry and counts
    nothing; a cancelled, unconfirmed or foreign registration is refused (422 naming the field)."""
    now = now or datetime.now(UTC)
    working_group, meeting = await _meeting(conn, catalog, wg_id, number)
    field = "registration_id" if check_in_code is None else "check_in_code"
    code = domain.normalise_check_in_code(check_in_code) if check_in_code is not None else None
    registration = await repo.registration_for_check_in(
        conn, wg_id, registration_id=registration_id, code=code
    )
    if registration is None:
        raise domain.InvalidRequest("no registration of this working group has it", field=field)
    domain.check_in_allowed(registration.status, registration.working_group_id, wg_id, field)
    entry = await repo.add_attendance(
        conn,
        {
            "registration_id": registration.id,
            "meeting_number": number,
            "working_group_id": wg_id,
            "checked_in_at": now,
            "checked_in_by": staff,
        },
    )
    new = entry is not None
    if entry is None:
        entry = await repo.attendance_entry(conn, registration.id, number)
        assert entry is not None
    if new:
        counted = await repo.count_attendance(conn, wg_id, number, registration.language)
        await _publish_counts(conn, working_group, meeting, counted)
        await service.audit(
            conn,
            staff,
            "attendance.checked_in",
            f"{wg_id}/{number}",
            {"registration_id": str(registration.id)},
        )
    return _entry(entry, registration, repeated=not new)


async def count_walk_in(
    conn: AsyncConnection,
    catalog: service.CatalogCache,
    wg_id: str,
    number: int,
    participant_type: str,
    language: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Someone came without registering: counted by type and language, nothing else is stored."""
    now = now or datetime.now(UTC)
    working_group, meeting = await _meeting(conn, catalog, wg_id, number)
    counted = await repo.count_attendance(conn, wg_id, number, language, walk_in_type=participant_type)
    await _publish_counts(conn, working_group, meeting, counted)
    return {
        "walk_in": {"participant_type": participant_type, "language": language},
        "meeting": number,
        "checked_in_at": now,
        "walk_ins": counted.walk_ins,
    }


def _counts(registered: int, row: Any) -> domain.MeetingCounts:
    if row is None:
        return domain.MeetingCounts(registered, 0, 0, {})
    return domain.MeetingCounts(registered, row.present, row.walk_ins, dict(row.by_language))


async def _publish_counts(
    conn: AsyncConnection, working_group: ev.WorkingGroupInfo, meeting: ev.MeetingInfo, row: Any
) -> None:
    counts = _counts(await repo.confirmed_count(conn, working_group.id), row)
    await add_event(
        conn,
        outbox,
        ev.AttendanceCounted(
            working_group=working_group, meeting=meeting, **counts.as_dict(), revision=row.revision
        ),
    )


async def attendance(
    conn: AsyncConnection,
    catalog: service.CatalogCache,
    wg_id: str,
    number: int,
    reader: str,
    name: str | None = None,
    format: str = "json",
) -> dict[str, Any]:
    """The meeting's list sorted by name (each with their entry, or none), its counts, and interpreters
    needed against present per language; ``name`` searches the working group's registrations. Audited."""
    working_group, meeting = await _meeting(conn, catalog, wg_id, number)
    rows = await repo.attendance_list(conn, wg_id, number, name)
    await service.audit(
        conn, reader, "attendance.read", f"{wg_id}/{number}", {"format": format, "search": bool(name)}
    )
    counts = _counts(
        await repo.confirmed_count(conn, wg_id), await repo.attendance_counts_of(conn, wg_id, number)
    )
    needed: dict[str, int] = {}
    present: dict[str, int] = {}
    for row in rows:
        if row.interpretation_language and row.status == "confirmed":
            needed[row.interpretation_language] = needed.get(row.interpretation_language, 0) + 1
        if row.interpretation_language and row.checked_in_at is not None:
            present[row.interpretation_language] = present.get(row.interpretation_language, 0) + 1
    return {
        "working_group": {"id": working_group.id, "title": working_group.title},
        "meeting": meeting.model_dump(mode="json"),
        "entries": [
            {
                "registration_id": row.id,
                "name": row.name,
                "status": row.status,
                "participant_type": row.participant_type,
                "organization": row.organization,
                "language": row.language,
                "interpretation_language": row.interpretation_language,
                "check_in_code": domain.display_check_in_code(row.check_in_code),
                "present": row.checked_in_at is not None,
                "checked_in_at": row.checked_in_at,
            }
            for row in rows
        ],
        "counts": counts.as_dict(),
        "interpreters": domain.interpreters(needed, present),
    }


async def forget_attendance(conn: AsyncConnection, registration_ids: list[Any]) -> int:
    """Erasure and retention: a registration's entries go with its personal data; the counts stay."""
    return await repo.forget_attendance(conn, registration_ids)


# --- minutes -----------------------------------------------------------------------------------------------


def minutes_url(settings: RegistrationSettings, wg_id: str, number: int) -> str:
    return f"{settings.public_url}/v1/working-groups/{wg_id}/meetings/{number}/minutes"


async def write_minutes(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: service.CatalogCache,
    wg_id: str,
    number: int,
    staff: str,
    summary_md: str,
    document_url: str | None,
    publish: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A new version (every version is kept). Publishing one tells every attendee with an address, in their
    language, that the minutes are online (one event per published version: a correction is told too)."""
    now = now or datetime.now(UTC)
    domain.check_document_url(document_url)
    working_group, meeting = await _meeting(conn, catalog, wg_id, number)
    # The meeting's row lock orders two versions written at once.
    await repo.meeting(conn, wg_id, number, for_update=True)
    newest = await repo.newest_minutes_version(conn, wg_id, number)
    version = domain.next_minutes_version(newest)
    was_published = bool(await repo.published_minutes_versions(conn, wg_id, number))
    values = {
        "working_group_id": wg_id,
        "meeting_number": number,
        "version": version,
        "summary_md": summary_md,
        "document_url": document_url,
        "published": publish,
        "created_by": staff,
        "created_at": now,
    }
    await repo.add_minutes(conn, values)
    await service.audit(
        conn, staff, "minutes.written", f"{wg_id}/{number}", {"version": version, "publish": publish}
    )
    if publish:
        participants = [
            ev.Participant(
                registration_id=row.id,
                recipient=service.recipient_of(row),
                links=service.Links.of(settings, row.id),
            )
            for row in await repo.attendees_with_address(conn, wg_id, number)
        ]
        await add_event(
            conn,
            outbox,
            ev.MeetingMinutesPublished(
                working_group=working_group,
                meeting=meeting,
                participants=participants,
                minutes_url=minutes_url(settings, wg_id, number),
                minutes_version=version,
                correction=was_published,
            ),
        )
    return _minutes(working_group, values)


def _minutes(working_group: ev.WorkingGroupInfo, row: Any) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else row._mapping.get
    return {
        "working_group": {"id": working_group.id, "title": working_group.title},
        "meeting": get("meeting_number"),
        "version": get("version"),
        "summary_md": get("summary_md"),
        "document_url": get("document_url"),
        "published": get("published"),
        "created_at": get("created_at"),
    }


async def published_minutes(
    conn: AsyncConnection, catalog: service.CatalogCache, wg_id: str, number: int, version: int | None
) -> tuple[dict[str, Any], ev.MeetingInfo, list[int]]:
    """The newest published version (or ``version`` if it is published), the meeting, and the published
    versions; 404 while nothing is published."""
    working_group, meeting = await _meeting(conn, catalog, wg_id, number)
    row = await repo.minutes_version(conn, wg_id, number, version, published_only=True)
    if row is None:
        raise domain.NotFound(NO_MINUTES)
    versions = await repo.published_minutes_versions(conn, wg_id, number)
    return _minutes(working_group, row), meeting, versions
