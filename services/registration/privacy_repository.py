"""The queries of erasure on request and retention (``privacy.py``'s use cases): erasure requests, an
address's registrations, keys and events, and the retention periods' conditional updates."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration.domain import ACTIVE_STATUSES
from services.registration.models import (
    PERSONAL_DATA_COLUMNS,
    erasure_requests,
    idempotency_keys,
    meetings,
    outbox,
    registrations,
)
from shared.addresses import normalised, sql_equals_address, sql_json_holds_address

# --- erasure requests ------------------------------------------------------------------------------------


async def lock_mailbox_requests(conn: AsyncConnection, mailbox_hash: str) -> None:
    """Two requests for one mailbox at once: the second waits here and then finds the first."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": "erasure:" + mailbox_hash}
    )


async def self_requests_since(
    conn: AsyncConnection, since: datetime, *, email_hash: str | None = None, mailbox_hash: str | None = None
) -> int:
    """Requests residents made themselves (each mailed a link) since ``since``: for one address, one
    mailbox, or all."""
    query = (
        select(func.count())
        .select_from(erasure_requests)
        .where(erasure_requests.c.origin == "self")
        .where(erasure_requests.c.created_at > since)
    )
    if email_hash is not None:
        query = query.where(erasure_requests.c.email_hash == email_hash)
    if mailbox_hash is not None:
        query = query.where(erasure_requests.c.mailbox_hash == mailbox_hash)
    return int(await conn.scalar(query) or 0)


async def insert_request(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(erasure_requests.insert().values(**values))


async def request_language(conn: AsyncConnection, token_hash: str) -> str | None:
    return await conn.scalar(
        select(erasure_requests.c.language).where(erasure_requests.c.token_hash == token_hash)
    )


async def request_by_token(conn: AsyncConnection, token_hash: str) -> Row[Any] | None:
    """The request behind a mailed link, locked."""
    query = select(erasure_requests).where(erasure_requests.c.token_hash == token_hash).with_for_update()
    return (await conn.execute(query)).first()


async def request(
    conn: AsyncConnection, request_id: uuid.UUID, *, token_hash: str | None = None, for_update: bool = False
) -> Row[Any] | None:
    """A request by its id (and, for a resident, the hash of its link's token)."""
    query = select(erasure_requests).where(erasure_requests.c.id == request_id)
    if token_hash is not None:
        query = query.where(erasure_requests.c.token_hash == token_hash)
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def update_request(conn: AsyncConnection, request_id: uuid.UUID, values: dict[str, Any]) -> None:
    await conn.execute(update(erasure_requests).where(erasure_requests.c.id == request_id).values(**values))


async def forget_unconfirmed_requests(conn: AsyncConnection, now: datetime) -> int:
    """Requests whose link expired unused go, address and all."""
    result = await conn.execute(
        delete(erasure_requests)
        .where(erasure_requests.c.status == "pending_verification")
        .where(erasure_requests.c.expires_at < now)
        .returning(erasure_requests.c.id)
    )
    return len(result.all())


async def oldest_unfinished_start(conn: AsyncConnection) -> datetime | None:
    """When the oldest erasure under way was started (verified, not yet answered by every service)."""
    return await conn.scalar(
        select(func.min(func.coalesce(erasure_requests.c.verified_at, erasure_requests.c.created_at))).where(
            erasure_requests.c.status == "erasing"
        )
    )


# --- what this service holds about an address --------------------------------------------------------------


def _mentions(document: Any, email: str) -> Any:
    """A JSON document (an event's payload, a remembered answer) holds the address as a value, exactly."""
    return sql_json_holds_address(document, normalised(email))


async def unpublished_events_mention(conn: AsyncConnection, email: str) -> bool:
    return bool(
        await conn.scalar(
            select(exists().where(outbox.c.published_at.is_(None)).where(_mentions(outbox.c.payload, email)))
        )
    )


async def forget_published_events(conn: AsyncConnection, email: str) -> int:
    """Published events keep their payload until housekeeping; those carrying the address go now."""
    result = await conn.execute(
        delete(outbox)
        .where(outbox.c.published_at.is_not(None))
        .where(_mentions(outbox.c.payload, email))
        .returning(outbox.c.id)
    )
    return len(result.all())


async def working_groups_with_active_registrations(conn: AsyncConnection, email: str) -> list[str]:
    """The working groups in which the address (as given, any letter case) has an active registration."""
    rows = await conn.execute(
        select(registrations.c.working_group_id)
        .where(sql_equals_address(registrations.c.email, normalised(email)))
        .where(registrations.c.status.in_(ACTIVE_STATUSES))
        .distinct()
    )
    return sorted(row.working_group_id for row in rows)


async def active_registrations_locked(
    conn: AsyncConnection, email: str, working_group_id: str
) -> Sequence[Row[Any]]:
    """The address's active registrations in one working group, locked (the group's lock is held)."""
    return (
        await conn.execute(
            select(registrations)
            .where(sql_equals_address(registrations.c.email, normalised(email)))
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.status.in_(ACTIVE_STATUSES))
            .with_for_update()
        )
    ).all()


async def erase_registrations(conn: AsyncConnection, email: str, now: datetime) -> list[uuid.UUID]:
    """Every registration of the address loses its personal data; returns their ids."""
    result = await conn.execute(
        update(registrations)
        .where(sql_equals_address(registrations.c.email, normalised(email)))
        .values(**dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
        .returning(registrations.c.id)
    )
    return [row.id for row in result.all()]


async def forget_idempotency_keys(conn: AsyncConnection, email: str) -> int:
    """Remembered answers keyed by, or holding, the address."""
    address = normalised(email)
    result = await conn.execute(
        delete(idempotency_keys)
        .where(
            or_(
                sql_equals_address(idempotency_keys.c.key, address),
                _mentions(idempotency_keys.c.response, address),
            )
        )
        .returning(idempotency_keys.c.key)
    )
    return len(result.all())


# --- retention ------------------------------------------------------------------------------------------------


def _holds_personal_data() -> Any:
    return or_(*(registrations.c[name].is_not(None) for name in PERSONAL_DATA_COLUMNS))


async def anonymise_ended_before(conn: AsyncConnection, cutoff: datetime, now: datetime) -> list[uuid.UUID]:
    """Registrations of working groups whose last meeting ended before ``cutoff`` lose their personal data
    (a group with a meeting still undated has no last meeting yet). One conditional UPDATE: a second
    replica running at the same time finds nothing left to do."""
    undated = (
        select(meetings.c.working_group_id)
        .where(meetings.c.working_group_id == registrations.c.working_group_id)
        .where(meetings.c.starts_at.is_(None))
    )
    last = (
        select(func.max(func.coalesce(meetings.c.ends_at, meetings.c.starts_at)))
        .where(meetings.c.working_group_id == registrations.c.working_group_id)
        .scalar_subquery()
    )
    result = await conn.execute(
        update(registrations)
        .where(_holds_personal_data())
        .where(~exists(undated))
        .where(last < cutoff)
        .values(**dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
        .returning(registrations.c.id)
    )
    return [row.id for row in result.all()]


async def anonymise_cancelled_before(
    conn: AsyncConnection, cutoff: datetime, now: datetime
) -> list[uuid.UUID]:
    result = await conn.execute(
        update(registrations)
        .where(registrations.c.status == "cancelled")
        .where(registrations.c.cancelled_at < cutoff)
        .where(_holds_personal_data())
        .values(**dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
        .returning(registrations.c.id)
    )
    return [row.id for row in result.all()]
