"""Every query of the proposals service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, literal, literal_column, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals.models import (
    FOLD_FROM,
    FOLD_TO,
    districts,
    outbox,
    proposal_history,
    proposals,
    working_groups,
)
from shared.addresses import mailbox, normalised, sql_equals_address, sql_json_holds_address

# --- districts -----------------------------------------------------------------------------------------


async def count_districts(session: AsyncConnection) -> int:
    return int(await session.scalar(select(func.count()).select_from(districts)) or 0)


async def insert_districts(session: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(districts).values(rows).on_conflict_do_nothing())


async def list_districts(session: AsyncConnection, *, include_retired: bool = False) -> Sequence[Row[Any]]:
    query = select(districts).order_by(districts.c.position, districts.c.id)
    if not include_retired:
        query = query.where(districts.c.active)
    return (await session.execute(query)).all()


async def get_district(session: AsyncConnection, district_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(districts).where(districts.c.id == district_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def add_district(session: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert a district; False when the id is taken."""
    position = await session.scalar(select(func.coalesce(func.max(districts.c.position), 0) + 1))
    inserted = await session.execute(
        insert(districts)
        .values(**values, position=position)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(districts.c.id)
    )
    return inserted.first() is not None


async def update_district(session: AsyncConnection, district_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        districts.update().where(districts.c.id == district_id).values(**values, updated_at=func.now())
    )


# --- the catalog read model ------------------------------------------------------------------------------


async def get_working_group(session: AsyncConnection, working_group_id: str) -> Row[Any] | None:
    return (
        await session.execute(select(working_groups).where(working_groups.c.id == working_group_id))
    ).first()


async def list_working_groups(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (await session.execute(select(working_groups).order_by(working_groups.c.id))).all()


async def upsert_working_group(session: AsyncConnection, values: dict[str, Any]) -> None:
    """Keep the newest state of a working group: the highest catalog version wins, whatever the order in
    which the events arrive (at equal versions, the later event)."""
    stmt = insert(working_groups).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "title": stmt.excluded.title,
                "meetings": stmt.excluded.meetings,
                "catalog_version": stmt.excluded.catalog_version,
                "updated_at": stmt.excluded.updated_at,
            },
            where=or_(
                working_groups.c.catalog_version < stmt.excluded.catalog_version,
                and_(
                    working_groups.c.catalog_version == stmt.excluded.catalog_version,
                    working_groups.c.updated_at <= stmt.excluded.updated_at,
                ),
            ),
        )
    )


# --- proposals -----------------------------------------------------------------------------------------

# The intake's statements, built once (building a statement costs as much CPU as running it), and as few
# round trips as the intake can make: one to read, one to write the proposal with its history entry.
_RECEIPTS_SINCE = (
    select(func.count())
    .select_from(proposals)
    .where(proposals.c.author_mailbox == bindparam("mailbox"))
    .where(proposals.c.created_at >= bindparam("since"))
    .scalar_subquery()
)
# Receipts of the last hour, city-wide, counted up to the cap only (a guard, read on every intake): the
# proposals still waiting for moderation that left an address (ix_proposals_queue).
_RECENT_RECEIPTS = (
    select(func.count())
    .select_from(
        select(literal(1))
        .select_from(proposals)
        .where(proposals.c.status == "submitted")
        .where(proposals.c.submitted_at >= bindparam("hour_ago"))
        .where(proposals.c.author_email.is_not(None))
        .limit(bindparam("receipt_cap"))
        .subquery()
    )
    .scalar_subquery()
)
_INTAKE_LABELS = (
    select(
        working_groups.c.title,
        districts.c.name.label("district_name"),
        districts.c.active.label("district_active"),
        _RECEIPTS_SINCE.label("receipts"),
        _RECENT_RECEIPTS.label("receipts_last_hour"),
    )
    .select_from(working_groups)
    .outerjoin(districts, districts.c.id == bindparam("district_id"))
    .where(working_groups.c.id == bindparam("working_group_id"))
)
_INTAKE_COLUMNS = (
    "id",
    "working_group_id",
    "district_id",
    "title",
    "body",
    "language",
    "author_name",
    "author_email",
    "author_mailbox",
    "token_hash",
    "status",
    "version",
)
_NEW_PROPOSAL = (
    proposals.insert()
    .values({name: bindparam(name) for name in _INTAKE_COLUMNS})
    .returning(proposals.c.id, proposals.c.status, proposals.c.version)
    .cte("new_proposal")
)
_INSERT_PROPOSAL_WITH_HISTORY = proposal_history.insert().from_select(
    ["proposal_id", "actor", "action", "to_status", "version"],
    select(
        _NEW_PROPOSAL.c.id,
        literal("author"),
        literal("submitted"),
        _NEW_PROPOSAL.c.status,
        _NEW_PROPOSAL.c.version,
    ),
)
_INSERT_HISTORY = proposal_history.insert()


async def intake_labels(
    session: AsyncConnection,
    working_group_id: str,
    district_id: str | None,
    email: str | None,
    receipts_since: datetime,
    hour_ago: datetime,
    receipt_cap: int,
) -> Row[Any] | None:
    """The working group's title, the district's name and state, how many proposals came from ``email``'s
    mailbox (``shared.addresses.mailbox``) since ``receipts_since`` (the receipt-mail budget of an address)
    and how many receipts the city sent since ``hour_ago`` (counted up to ``receipt_cap``), in one round
    trip; None when the working group is unknown (district_name is None when the district is)."""
    return (
        await session.execute(
            _INTAKE_LABELS,
            {
                "working_group_id": working_group_id,
                "district_id": district_id,
                "mailbox": mailbox(email) if email else None,
                "since": receipts_since,
                "hour_ago": hour_ago,
                "receipt_cap": max(receipt_cap, 0),
            },
        )
    ).first()


async def insert_submitted_proposal(session: AsyncConnection, values: dict[str, Any]) -> None:
    """A new proposal and its first history entry ("submitted" by the author), in one statement."""
    await session.execute(_INSERT_PROPOSAL_WITH_HISTORY, values)


async def get_proposal(
    session: AsyncConnection, proposal_id: uuid.UUID, *, lock: bool = False
) -> Row[Any] | None:
    query = select(proposals).where(proposals.c.id == proposal_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def proposal_by_token_hash(
    session: AsyncConnection, token_hash: str, *, lock: bool = False
) -> Row[Any] | None:
    query = select(proposals).where(proposals.c.token_hash == token_hash)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def update_proposal(session: AsyncConnection, proposal_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(
        proposals.update().where(proposals.c.id == proposal_id).values(**values, updated_at=func.now())
    )


_LABELLED = (
    select(
        proposals,
        working_groups.c.title.label("working_group_title"),
        districts.c.name.label("district_name"),
    )
    .join(working_groups, working_groups.c.id == proposals.c.working_group_id)
    .outerjoin(districts, districts.c.id == proposals.c.district_id)
)


async def labelled_proposal(session: AsyncConnection, proposal_id: uuid.UUID) -> Row[Any] | None:
    """A proposal with its working group's title and its district's name."""
    return (await session.execute(_LABELLED.where(proposals.c.id == proposal_id))).first()


def folded_query(q: str) -> Any:
    """The words typed, with their accents folded away as in ``search_folded`` (models.folded)."""
    folded = func.replace(func.translate(func.lower(q), FOLD_FROM, FOLD_TO), "ß", "ss")
    return func.websearch_to_tsquery(literal_column("'simple'::regconfig"), folded)


def search_condition(q: str) -> Any:
    """Full-text match: German stemming for German texts, plain words for the others; or the same words
    whatever their accents, in every language (``Sprachcafe`` finds ``Sprachcafé``)."""
    return or_(
        proposals.c.search.op("@@")(
            func.websearch_to_tsquery(literal_column("'german'::regconfig"), q).op("||")(
                func.websearch_to_tsquery(literal_column("'simple'::regconfig"), q)
            )
        ),
        proposals.c.search_folded.op("@@")(folded_query(q)),
    )


async def published_page(
    session: AsyncConnection,
    *,
    working_group_id: str | None,
    district_id: str | None,
    q: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Published proposals, newest first, ``limit`` after the keyset ``after``."""
    query = _LABELLED.where(proposals.c.status == "published")
    if working_group_id:
        query = query.where(proposals.c.working_group_id == working_group_id)
    if district_id:
        query = query.where(proposals.c.district_id == district_id)
    if q:
        query = query.where(search_condition(q))
    if after is not None:
        query = query.where(tuple_(proposals.c.published_at, proposals.c.id) < tuple_(*after))
    query = query.order_by(proposals.c.published_at.desc(), proposals.c.id.desc()).limit(limit)
    return (await session.execute(query)).all()


async def queue_page(
    session: AsyncConnection,
    *,
    status: str,
    working_group_id: str | None,
    district_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """The moderation queue: proposals of one status, oldest first (by when they entered the queue)."""
    query = _LABELLED.where(proposals.c.status == status)
    if working_group_id:
        query = query.where(proposals.c.working_group_id == working_group_id)
    if district_id:
        query = query.where(proposals.c.district_id == district_id)
    if after is not None:
        query = query.where(tuple_(proposals.c.submitted_at, proposals.c.id) > tuple_(*after))
    query = query.order_by(proposals.c.submitted_at, proposals.c.id).limit(limit)
    return (await session.execute(query)).all()


async def queue_counts(session: AsyncConnection) -> Sequence[Row[Any]]:
    """How many proposals per status × working group × district, with the oldest entry of each."""
    return (
        await session.execute(
            select(
                proposals.c.status,
                proposals.c.working_group_id,
                proposals.c.district_id,
                func.count().label("count"),
                func.min(proposals.c.submitted_at).label("oldest_submitted_at"),
            )
            .group_by(proposals.c.status, proposals.c.working_group_id, proposals.c.district_id)
            .order_by(proposals.c.status, proposals.c.working_group_id, proposals.c.district_id)
        )
    ).all()


async def database_now(session: AsyncConnection) -> datetime:
    return await session.scalar(select(func.now()))  # type: ignore[return-value]


async def report_counts(session: AsyncConnection) -> Sequence[Row[Any]]:
    """Counts by working group, district, status and outcome."""
    return (
        await session.execute(
            select(
                proposals.c.working_group_id,
                proposals.c.district_id,
                proposals.c.status,
                proposals.c.outcome,
                func.count().label("count"),
            ).group_by(
                proposals.c.working_group_id, proposals.c.district_id, proposals.c.status, proposals.c.outcome
            )
        )
    ).all()


async def published_for_report(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            _LABELLED.where(proposals.c.status == "published").order_by(
                working_groups.c.title,
                districts.c.position.nulls_last(),
                proposals.c.published_at,
                proposals.c.id,
            )
        )
    ).all()


# --- history and audit ---------------------------------------------------------------------------------


async def append_history(session: AsyncConnection, values: dict[str, Any]) -> None:
    await session.execute(_INSERT_HISTORY, values)


async def history_of(session: AsyncConnection, proposal_id: uuid.UUID) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(proposal_history)
            .where(proposal_history.c.proposal_id == proposal_id)
            .order_by(proposal_history.c.id)
        )
    ).all()


# --- personal data -------------------------------------------------------------------------------------

_FORGET_AUTHOR = {"author_name": None, "author_email": None, "author_mailbox": None, "token_hash": None}


async def forget_author_by_email(session: AsyncConnection, email: str) -> int:
    """Remove the author's contact data from every proposal sent from ``email`` (any letter case)."""
    result = await session.execute(
        proposals.update()
        .where(sql_equals_address(proposals.c.author_email, normalised(email)))
        .values(**_FORGET_AUTHOR, updated_at=func.now())
        .returning(proposals.c.id)
    )
    return len(result.all())


async def forget_authors_decided_before(session: AsyncConnection, cutoff: datetime) -> int:
    """Remove authors' contact data where the proposal's story ended before ``cutoff``: its outcome was
    decided, or it was rejected, merged as a duplicate or withdrawn."""
    ended = or_(
        proposals.c.outcome_at < cutoff,
        and_(proposals.c.status.in_(("rejected", "duplicate", "withdrawn")), proposals.c.updated_at < cutoff),
    )
    result = await session.execute(
        proposals.update()
        .where(proposals.c.author_email.is_not(None))
        .where(ended)
        .values(**_FORGET_AUTHOR)
        .returning(proposals.c.id)
    )
    return len(result.all())


async def forget_authors_unfinished_before(session: AsyncConnection, cutoff: datetime) -> int:
    """Remove authors' contact data where the proposal's story never ended and nothing changed since
    ``cutoff``: never moderated, left in ``changes_requested``, or published without an outcome."""
    unfinished = or_(
        proposals.c.status.in_(("submitted", "changes_requested")),
        and_(proposals.c.status == "published", proposals.c.outcome_at.is_(None)),
    )
    result = await session.execute(
        proposals.update()
        .where(proposals.c.author_email.is_not(None))
        .where(unfinished)
        .where(proposals.c.updated_at < cutoff)
        .values(**_FORGET_AUTHOR)
        .returning(proposals.c.id)
    )
    return len(result.all())


async def forget_outbox_rows_mentioning(session: AsyncConnection, email: str) -> int:
    """Events already published keep their payload for a while (housekeeping deletes them later): drop
    those that carry the address now."""
    result = await session.execute(
        outbox.delete()
        .where(outbox.c.published_at.is_not(None))
        .where(sql_json_holds_address(outbox.c.payload, normalised(email)))
        .returning(outbox.c.id)
    )
    return len(result.all())
