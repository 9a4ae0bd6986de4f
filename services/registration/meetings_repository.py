"""The queries of attendance and minutes (``meetings.py``'s use cases): check-in entries, a meeting's
counts, the attendance list, minutes versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration.models import (
    attendance,
    attendance_counts,
    minutes,
    registrations,
    working_groups,
)

# === After the meetings: attendance and minutes (issue 24) ==================================================


async def registration_for_check_in(
    session: AsyncConnection, working_group_id: str, *, registration_id: Any = None, code: str | None = None
) -> Row[Any] | None:
    """A registration by its id (any working group: the caller tells a foreign one apart) or by its check-in
    code within ``working_group_id``."""
    query = select(
        registrations.c.id,
        registrations.c.working_group_id,
        registrations.c.status,
        registrations.c.name,
        registrations.c.language,
        registrations.c.check_in_code,
    )
    if code is not None:
        query = query.where(
            registrations.c.working_group_id == working_group_id, registrations.c.check_in_code == code
        )
    else:
        query = query.where(registrations.c.id == registration_id)
    return (await session.execute(query)).first()


async def add_attendance(session: AsyncConnection, values: dict[str, Any]) -> Row[Any] | None:
    """The new entry, or None when the registration was checked in at that meeting already."""
    result = await session.execute(
        pg_insert(attendance).values(**values).on_conflict_do_nothing().returning(*attendance.c)
    )
    return result.first()


async def attendance_entry(session: AsyncConnection, registration_id: Any, number: int) -> Row[Any] | None:
    return (
        await session.execute(
            select(attendance)
            .where(attendance.c.registration_id == registration_id)
            .where(attendance.c.meeting_number == number)
        )
    ).first()


async def count_attendance(
    session: AsyncConnection,
    working_group_id: str,
    number: int,
    language: str,
    walk_in_type: str | None = None,
) -> Row[Any]:
    """Add one present person (a registration, or a walk-in of ``walk_in_type``) to the meeting's counts,
    under the counts row's lock; returns the new counts with their ``revision``."""
    by_language = func.jsonb_build_object(language, 1)
    stmt = pg_insert(attendance_counts).values(
        working_group_id=working_group_id,
        meeting_number=number,
        present=0 if walk_in_type else 1,
        walk_ins=1 if walk_in_type else 0,
        by_language=by_language,
        walk_ins_by_type=func.jsonb_build_object(walk_in_type, 1) if walk_in_type else text("'{}'::jsonb"),
        revision=1,
    )
    current = attendance_counts.c
    added = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[current.working_group_id, current.meeting_number],
        set_={
            "present": current.present + added.present,
            "walk_ins": current.walk_ins + added.walk_ins,
            "by_language": current.by_language.op("||")(
                func.jsonb_build_object(
                    language, func.coalesce(current.by_language[language].as_integer(), 0) + 1
                )
            ),
            "walk_ins_by_type": (
                current.walk_ins_by_type.op("||")(
                    func.jsonb_build_object(
                        walk_in_type,
                        func.coalesce(current.walk_ins_by_type[walk_in_type].as_integer(), 0) + 1,
                    )
                )
                if walk_in_type
                else current.walk_ins_by_type
            ),
            "revision": current.revision + 1,
            "updated_at": func.now(),
        },
    ).returning(attendance_counts)
    return (await session.execute(stmt)).one()


async def attendance_counts_of(
    session: AsyncConnection, working_group_id: str, number: int
) -> Row[Any] | None:
    return (
        await session.execute(
            select(attendance_counts)
            .where(attendance_counts.c.working_group_id == working_group_id)
            .where(attendance_counts.c.meeting_number == number)
        )
    ).first()


async def confirmed_count(session: AsyncConnection, working_group_id: str) -> int:
    """Confirmed registrations of the working group: its seat counters (kept under its lock)."""
    taken = working_groups.c.confirmed_general + working_groups.c.confirmed_reserved
    return int(await session.scalar(select(taken).where(working_groups.c.id == working_group_id)) or 0)


def _like_pattern(typed: str) -> str:
    escaped = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def attendance_list(
    session: AsyncConnection, working_group_id: str, number: int, name: str | None = None
) -> Sequence[Row[Any]]:
    """The meeting's list, sorted by name: every confirmed registration of the working group and everyone
    checked in, each with their entry (or none); ``name`` narrows it to names containing it (any case)."""
    entry = attendance.alias("entry")
    joined = registrations.outerjoin(
        entry, and_(entry.c.registration_id == registrations.c.id, entry.c.meeting_number == number)
    )
    query = (
        select(
            registrations.c.id,
            registrations.c.name,
            registrations.c.status,
            registrations.c.language,
            registrations.c.participant_type,
            registrations.c.organization,
            registrations.c.interpretation_language,
            registrations.c.check_in_code,
            entry.c.checked_in_at,
        )
        .select_from(joined)
        .where(registrations.c.working_group_id == working_group_id)
        .where(or_(registrations.c.status == "confirmed", entry.c.checked_in_at.is_not(None)))
        .where(registrations.c.name.is_not(None))
        .order_by(func.lower(registrations.c.name), registrations.c.id)
    )
    if name:
        query = query.where(registrations.c.name.ilike(_like_pattern(name), escape="\\"))
    return (await session.execute(query)).all()


async def forget_attendance(session: AsyncConnection, registration_ids: Sequence[Any]) -> int:
    """The entries of registrations whose personal data went (erasure, retention); counts stay."""
    if not registration_ids:
        return 0
    result = await session.execute(
        delete(attendance)
        .where(attendance.c.registration_id.in_(list(registration_ids)))
        .returning(attendance.c.registration_id)
    )
    return len(result.all())


async def newest_minutes_version(session: AsyncConnection, working_group_id: str, number: int) -> int | None:
    return await session.scalar(
        select(func.max(minutes.c.version))
        .where(minutes.c.working_group_id == working_group_id)
        .where(minutes.c.meeting_number == number)
    )


async def add_minutes(session: AsyncConnection, values: dict[str, Any]) -> None:
    await session.execute(insert(minutes).values(**values))


async def minutes_version(
    session: AsyncConnection, working_group_id: str, number: int, version: int | None, published_only: bool
) -> Row[Any] | None:
    """One version (the newest when ``version`` is None); published ones only when ``published_only``."""
    query = (
        select(minutes)
        .where(minutes.c.working_group_id == working_group_id)
        .where(minutes.c.meeting_number == number)
        .order_by(minutes.c.version.desc())
        .limit(1)
    )
    if version is not None:
        query = query.where(minutes.c.version == version)
    if published_only:
        query = query.where(minutes.c.published.is_(True))
    return (await session.execute(query)).first()


async def published_minutes_versions(
    session: AsyncConnection, working_group_id: str, number: int
) -> list[int]:
    return list(
        (
            await session.scalars(
                select(minutes.c.version)
                .where(minutes.c.working_group_id == working_group_id)
                .where(minutes.c.meeting_number == number)
                .where(minutes.c.published.is_(True))
                .order_by(minutes.c.version)
            )
        ).all()
    )


async def attendees_with_address(
    session: AsyncConnection, working_group_id: str, number: int
) -> Sequence[Row[Any]]:
    """Checked-in registrations of the meeting that still have an address (the minutes' mail)."""
    return (
        await session.execute(
            select(registrations)
            .join(attendance, attendance.c.registration_id == registrations.c.id)
            .where(attendance.c.working_group_id == working_group_id)
            .where(attendance.c.meeting_number == number)
            .where(registrations.c.email.is_not(None))
            .order_by(registrations.c.id)
        )
    ).all()
