"""All queries of the registration service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.registration.models import idempotency_keys, meetings, registrations, working_groups

ACTIVE_STATUSES = ("pending_confirmation", "confirmed", "waitlisted")


async def count_working_groups(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(working_groups)) or 0)


async def list_working_groups(session: AsyncSession) -> Sequence[Row[Any]]:
    return (await session.execute(select(working_groups).order_by(working_groups.c.position))).all()


async def get_working_group(session: AsyncSession, working_group_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(working_groups).where(working_groups.c.id == working_group_id))
    ).first()


async def lock_working_group(session: AsyncSession, working_group_id: str) -> Row[Any] | None:
    """Lock a working group's row: every change of its seat counters happens under this lock."""
    return (
        await session.execute(
            select(working_groups).where(working_groups.c.id == working_group_id).with_for_update()
        )
    ).first()


async def meetings_of(session: AsyncSession, working_group_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    rows = (
        await session.execute(
            select(meetings)
            .where(meetings.c.working_group_id.in_(working_group_ids))
            .order_by(meetings.c.working_group_id, meetings.c.number)
        )
    ).all()
    result: dict[str, list[Row[Any]]] = {wg: [] for wg in working_group_ids}
    for row in rows:
        result[row.working_group_id].append(row)
    return result


async def waitlist_counts(session: AsyncSession, working_group_ids: Sequence[str]) -> dict[str, int]:
    rows = (
        await session.execute(
            select(registrations.c.working_group_id, func.count())
            .where(registrations.c.working_group_id.in_(working_group_ids))
            .where(registrations.c.status == "waitlisted")
            .group_by(registrations.c.working_group_id)
        )
    ).all()
    return {wg: int(n) for wg, n in rows}


async def active_registration_for(
    session: AsyncSession, working_group_id: str, email_key: str
) -> Row[Any] | None:
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.email_key == email_key)
            .where(registrations.c.status.in_(ACTIVE_STATUSES))
        )
    ).first()


async def registration_by_token_hash(
    session: AsyncSession, token_hash: str, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(registrations).where(registrations.c.token_hash == token_hash)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def registration_by_id(session: AsyncSession, registration_id: uuid.UUID) -> Row[Any] | None:
    return (await session.execute(select(registrations).where(registrations.c.id == registration_id))).first()


async def waitlist_position(session: AsyncSession, working_group_id: str, waitlist_seq: int) -> int:
    ahead = await session.scalar(
        select(func.count())
        .select_from(registrations)
        .where(registrations.c.working_group_id == working_group_id)
        .where(registrations.c.status == "waitlisted")
        .where(registrations.c.waitlist_seq < waitlist_seq)
    )
    return int(ahead or 0) + 1


async def idempotent_response(session: AsyncSession, key: str) -> Row[Any] | None:
    return (await session.execute(select(idempotency_keys).where(idempotency_keys.c.key == key))).first()


async def waitlist(session: AsyncSession, working_group_id: str) -> Sequence[Row[Any]]:
    """The waitlist in order, locked (the caller holds the working group's lock already)."""
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.status == "waitlisted")
            .order_by(registrations.c.waitlist_seq)
            .with_for_update()
        )
    ).all()


async def confirmed_registrations(session: AsyncSession, working_group_id: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.status == "confirmed")
            .order_by(registrations.c.confirmed_at)
        )
    ).all()


async def participants(session: AsyncSession, working_group_id: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.status.in_(("confirmed", "waitlisted")))
            .order_by(registrations.c.status, registrations.c.confirmed_at, registrations.c.waitlist_seq)
        )
    ).all()


async def meeting(
    session: AsyncSession, working_group_id: str, number: int, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(meetings).where(
        meetings.c.working_group_id == working_group_id, meetings.c.number == number
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def claim_expired(session: AsyncSession, now: Any, batch: int) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.status == "pending_confirmation")
            .where(registrations.c.expires_at < now)
            .order_by(registrations.c.expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def claim_due_reminders(session: AsyncSession, now: Any, lead: Any) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            meetings.update()
            .where(meetings.c.starts_at.is_not(None))
            .where(meetings.c.cancelled.is_(False))
            .where(meetings.c.starts_at > now)
            .where(meetings.c.starts_at - lead <= now)
            .where(meetings.c.reminder_sent_for.is_distinct_from(meetings.c.starts_at))
            .values(reminder_sent_for=meetings.c.starts_at)
            .returning(meetings)
        )
    ).all()
