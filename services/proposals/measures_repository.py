"""Every query of measures, their followers, attendance counts and open data (the proposals schema)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals.models import (
    attendance_counts,
    districts,
    measure_author_optouts,
    measure_followers,
    measure_progress,
    measure_proposals,
    measures,
    proposals,
    working_groups,
)
from services.proposals.repository import folded_query
from shared.addresses import normalised, sql_equals_address

# --- measures ------------------------------------------------------------------------------------------

_LABELLED = (
    select(
        measures,
        working_groups.c.title.label("working_group_title"),
        districts.c.name.label("district_name"),
    )
    .join(working_groups, working_groups.c.id == measures.c.working_group_id)
    .outerjoin(districts, districts.c.id == measures.c.district_id)
)


async def proposal_outcomes(session: AsyncConnection, proposal_ids: list[uuid.UUID]) -> dict[str, str | None]:
    """The outcome of each published proposal among ``proposal_ids`` (others are absent)."""
    rows = await session.execute(
        select(proposals.c.id, proposals.c.outcome, proposals.c.working_group_id)
        .where(proposals.c.id.in_(proposal_ids))
        .where(proposals.c.status == "published")
    )
    return {str(r.id): r.outcome for r in rows}


async def insert_measure(
    session: AsyncConnection, values: dict[str, Any], proposal_ids: list[uuid.UUID]
) -> None:
    await session.execute(measures.insert().values(**values))
    if proposal_ids:
        await session.execute(
            measure_proposals.insert(), [{"measure_id": values["id"], "proposal_id": p} for p in proposal_ids]
        )


async def get_measure(
    session: AsyncConnection, measure_id: uuid.UUID, *, lock: bool = False
) -> Row[Any] | None:
    query = _LABELLED.where(measures.c.id == measure_id)
    if lock:
        query = query.with_for_update(of=measures)
    return (await session.execute(query)).first()


async def update_measure(session: AsyncConnection, measure_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(
        measures.update().where(measures.c.id == measure_id).values(**values, updated_at=func.now())
    )


async def append_progress(session: AsyncConnection, values: dict[str, Any]) -> int:
    return int(
        await session.scalar(measure_progress.insert().values(**values).returning(measure_progress.c.id)) or 0
    )


async def progress_of(session: AsyncConnection, measure_id: uuid.UUID) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(measure_progress)
            .where(measure_progress.c.measure_id == measure_id)
            .order_by(measure_progress.c.id)
        )
    ).all()


async def linked_proposals(session: AsyncConnection, measure_id: uuid.UUID) -> Sequence[Row[Any]]:
    """The measure's proposals, with their authors' contact data (for mails only, never shown)."""
    return (
        await session.execute(
            select(
                proposals.c.id,
                proposals.c.title,
                proposals.c.outcome,
                proposals.c.language,
                proposals.c.author_name,
                proposals.c.author_email,
                measure_author_optouts.c.proposal_id.label("opted_out"),
            )
            .join(measure_proposals, measure_proposals.c.proposal_id == proposals.c.id)
            .outerjoin(
                measure_author_optouts,
                (measure_author_optouts.c.measure_id == measure_proposals.c.measure_id)
                & (measure_author_optouts.c.proposal_id == proposals.c.id),
            )
            .where(measure_proposals.c.measure_id == measure_id)
            .order_by(proposals.c.published_at, proposals.c.id)
        )
    ).all()


async def measures_of_proposal(session: AsyncConnection, proposal_id: uuid.UUID) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(measures.c.id, measures.c.title, measures.c.status, measures.c.decision)
            .join(measure_proposals, measure_proposals.c.measure_id == measures.c.id)
            .where(measure_proposals.c.proposal_id == proposal_id)
            .order_by(measures.c.created_at, measures.c.id)
        )
    ).all()


def measure_search_condition(q: str) -> Any:
    return or_(
        measures.c.search.op("@@")(func.websearch_to_tsquery("simple", q)),
        measures.c.search_folded.op("@@")(folded_query(q)),
    )


async def measure_page(
    session: AsyncConnection,
    *,
    working_group_id: str | None,
    district_id: str | None,
    status: str | None,
    q: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Measures, newest first, ``limit`` after the keyset ``after``."""
    query = _LABELLED
    if working_group_id:
        query = query.where(measures.c.working_group_id == working_group_id)
    if district_id:
        query = query.where(measures.c.district_id == district_id)
    if status:
        query = query.where(measures.c.status == status)
    if q:
        query = query.where(measure_search_condition(q))
    if after is not None:
        query = query.where(tuple_(measures.c.created_at, measures.c.id) < tuple_(*after))
    query = query.order_by(measures.c.created_at.desc(), measures.c.id.desc()).limit(limit)
    return (await session.execute(query)).all()


async def author_opt_out(session: AsyncConnection, measure_id: uuid.UUID, proposal_id: uuid.UUID) -> None:
    await session.execute(
        insert(measure_author_optouts)
        .values(measure_id=measure_id, proposal_id=proposal_id)
        .on_conflict_do_nothing()
    )


# --- followers -----------------------------------------------------------------------------------------


async def add_follower(session: AsyncConnection, values: dict[str, Any]) -> bool:
    """A new (unconfirmed) follower; False when the address follows or asked to follow already."""
    inserted = await session.execute(
        insert(measure_followers)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["measure_id", "mailbox"])
        .returning(measure_followers.c.id)
    )
    return inserted.first() is not None


async def follow_requests_since(session: AsyncConnection, mailbox: str, since: datetime) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(measure_followers)
            .where(measure_followers.c.mailbox == mailbox)
            .where(measure_followers.c.created_at >= since)
        )
        or 0
    )


async def follower_by_token_hash(session: AsyncConnection, token_hash: str) -> Row[Any] | None:
    return (
        await session.execute(select(measure_followers).where(measure_followers.c.token_hash == token_hash))
    ).first()


async def confirm_follower(session: AsyncConnection, follower_id: uuid.UUID) -> None:
    await session.execute(
        measure_followers.update()
        .where(measure_followers.c.id == follower_id)
        .where(measure_followers.c.confirmed_at.is_(None))
        .values(confirmed_at=func.now())
    )


async def remove_follower(session: AsyncConnection, follower_id: uuid.UUID) -> None:
    await session.execute(measure_followers.delete().where(measure_followers.c.id == follower_id))


async def confirmed_followers(session: AsyncConnection, measure_id: uuid.UUID) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(measure_followers)
            .where(measure_followers.c.measure_id == measure_id)
            .where(measure_followers.c.confirmed_at.is_not(None))
            .order_by(measure_followers.c.created_at, measure_followers.c.id)
        )
    ).all()


async def forget_followers_by_email(session: AsyncConnection, email: str) -> int:
    """Erasure: every follow of ``email`` (exact match, any letter case) goes."""
    result = await session.execute(
        measure_followers.delete()
        .where(sql_equals_address(measure_followers.c.email, normalised(email)))
        .returning(measure_followers.c.id)
    )
    return len(result.all())


async def forget_unconfirmed_followers_before(session: AsyncConnection, cutoff: datetime) -> int:
    result = await session.execute(
        measure_followers.delete()
        .where(measure_followers.c.confirmed_at.is_(None))
        .where(measure_followers.c.created_at < cutoff)
        .returning(measure_followers.c.id)
    )
    return len(result.all())


# --- attendance counts (meeting.attendance_counted) ----------------------------------------------------


async def upsert_attendance(session: AsyncConnection, values: dict[str, Any]) -> None:
    """Keep the newest counts of a meeting: the highest revision wins, whatever the order of arrival."""
    stmt = insert(attendance_counts).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["working_group_id", "meeting_number"],
            set_={k: stmt.excluded[k] for k in values if k not in ("working_group_id", "meeting_number")},
            where=attendance_counts.c.revision < stmt.excluded.revision,
        )
    )


# --- open data: public facts only, never an author, an address or an internal note -----------------------


async def open_proposals(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(
                proposals.c.id,
                proposals.c.working_group_id,
                working_groups.c.title.label("working_group_title"),
                proposals.c.district_id,
                districts.c.name.label("district_name"),
                proposals.c.title,
                proposals.c.body,
                proposals.c.language,
                proposals.c.public_statement,
                proposals.c.merged_duplicates,
                proposals.c.outcome,
                proposals.c.outcome_statement,
                proposals.c.published_at,
                proposals.c.outcome_at,
            )
            .join(working_groups, working_groups.c.id == proposals.c.working_group_id)
            .outerjoin(districts, districts.c.id == proposals.c.district_id)
            .where(proposals.c.status == "published")
            .order_by(proposals.c.published_at, proposals.c.id)
        )
    ).all()


async def open_measures(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (await session.execute(_LABELLED.order_by(measures.c.created_at, measures.c.id))).all()


async def all_progress(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (await session.execute(select(measure_progress).order_by(measure_progress.c.id))).all()


async def all_links(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(measure_proposals).order_by(
                measure_proposals.c.measure_id, measure_proposals.c.proposal_id
            )
        )
    ).all()


async def open_attendance(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(attendance_counts, working_groups.c.title.label("working_group_title"))
            .outerjoin(working_groups, working_groups.c.id == attendance_counts.c.working_group_id)
            .order_by(attendance_counts.c.working_group_id, attendance_counts.c.meeting_number)
        )
    ).all()
