"""All queries of the registration service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration.domain import ACTIVE_STATUSES, Confirmation, GroupCounters
from services.registration.models import (
    PERSONAL_DATA_COLUMNS,
    meetings,
    outbox,
    registrations,
    working_groups,
)
from shared.db import driver_connection
from shared.outbox import OutboxRow, stage_from


def group_counters(row: Any, prefix: str = "") -> GroupCounters:
    return GroupCounters(**{f.name: getattr(row, prefix + f.name) for f in fields(GroupCounters)})


# --- the catalog ------------------------------------------------------------------------------------------


async def lock_catalog_seed(conn: AsyncConnection) -> None:
    """Two replicas starting together: the second waits here, then finds the catalog."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('registration.seed_catalog'))"))


async def insert_working_group(
    conn: AsyncConnection, values: dict[str, Any], meeting_values: list[dict[str, Any]]
) -> None:
    await conn.execute(insert(working_groups).values(**values))
    await conn.execute(insert(meetings).values(meeting_values))


async def update_capacity(
    conn: AsyncConnection, working_group_id: str, capacity: int, expert_reserved: int, now: Any
) -> None:
    await conn.execute(
        working_groups.update()
        .where(working_groups.c.id == working_group_id)
        .values(capacity=capacity, expert_reserved=expert_reserved, updated_at=now)
    )


async def update_meeting(
    conn: AsyncConnection, working_group_id: str, number: int, values: dict[str, Any], sequence: int, now: Any
) -> None:
    """Change a meeting (with its new calendar ``sequence``) and raise the group's ``catalog_version``."""
    await conn.execute(
        meetings.update()
        .where(meetings.c.working_group_id == working_group_id, meetings.c.number == number)
        .values(**values, sequence=sequence)
    )
    await conn.execute(
        working_groups.update()
        .where(working_groups.c.id == working_group_id)
        .values(catalog_version=working_groups.c.catalog_version + 1, updated_at=now)
    )


async def count_working_groups(session: AsyncConnection) -> int:
    return int(await session.scalar(select(func.count()).select_from(working_groups)) or 0)


async def list_working_groups(session: AsyncConnection) -> Sequence[Row[Any]]:
    return (await session.execute(select(working_groups).order_by(working_groups.c.position))).all()


# Statements on the hot paths (registering, confirming, cancelling) are built once and executed with
# parameters: building a statement per call costs about as much CPU as executing it.
_WORKING_GROUP = select(working_groups).where(working_groups.c.id == bindparam("wg_id"))
_WORKING_GROUP_LOCKED = _WORKING_GROUP.with_for_update()
_BY_TOKEN = select(registrations).where(registrations.c.token_hash == bindparam("token_hash"))
_BY_TOKEN_LOCKED = _BY_TOKEN.with_for_update()
_WAITLIST_AHEAD = (
    select(func.count())
    .select_from(registrations)
    .where(registrations.c.working_group_id == bindparam("wg_id"))
    .where(registrations.c.status == "waitlisted")
    .where(registrations.c.waitlist_seq < bindparam("seq"))
)
_STORE_SEAT_COUNTERS = (
    update(working_groups)
    .where(working_groups.c.id == bindparam("wg_id"))
    .values(
        confirmed_general=bindparam("general"),
        confirmed_reserved=bindparam("reserved"),
        waitlist_seq=bindparam("waitlist_seq"),
        waitlisted=bindparam("waitlisted"),
        updated_at=bindparam("now"),
    )
)
# The registration, with its working group's row locked (and read after the lock was granted). The
# registration's own columns come from the statement's snapshot, so changes of its state are made
# conditional on the state seen here.
_GROUP_PREFIX = "wg_"
_REGISTRATION_WITH_LOCKED_GROUP = (
    select(registrations, *[c.label(_GROUP_PREFIX + c.name) for c in working_groups.c])
    .join_from(registrations, working_groups, registrations.c.working_group_id == working_groups.c.id)
    .where(registrations.c.token_hash == bindparam("token_hash"))
    .with_for_update(of=working_groups)
)


async def get_working_group(session: AsyncConnection, working_group_id: str) -> Row[Any] | None:
    return (await session.execute(_WORKING_GROUP, {"wg_id": working_group_id})).first()


async def lock_working_group(session: AsyncConnection, working_group_id: str) -> Row[Any] | None:
    """Lock a working group's row: every change of its seat counters happens under this lock."""
    return (await session.execute(_WORKING_GROUP_LOCKED, {"wg_id": working_group_id})).first()


async def registration_with_locked_group(
    session: AsyncConnection, token_hash: str
) -> tuple[Row[Any], GroupCounters] | None:
    row = (await session.execute(_REGISTRATION_WITH_LOCKED_GROUP, {"token_hash": token_hash})).first()
    return None if row is None else (row, group_counters(row, _GROUP_PREFIX))


async def store_seat_counters(session: AsyncConnection, counters: GroupCounters, now: Any) -> None:
    await session.execute(
        _STORE_SEAT_COUNTERS,
        {
            "wg_id": counters.id,
            "general": counters.confirmed_general,
            "reserved": counters.confirmed_reserved,
            "waitlist_seq": counters.waitlist_seq,
            "waitlisted": counters.waitlisted,
            "now": now,
        },
    )


async def meetings_of(
    session: AsyncConnection, working_group_ids: Sequence[str]
) -> dict[str, list[Row[Any]]]:
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


async def active_registration_for(
    session: AsyncConnection, working_group_id: str, email_key: str
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
    session: AsyncConnection, token_hash: str, *, for_update: bool = False
) -> Row[Any] | None:
    query = _BY_TOKEN_LOCKED if for_update else _BY_TOKEN
    return (await session.execute(query, {"token_hash": token_hash})).first()


async def registration_by_revoked_token_hash(session: AsyncConnection, token_hash: str) -> Row[Any] | None:
    return (
        await session.execute(
            select(registrations.c.id, registrations.c.language).where(
                registrations.c.revoked_token_hash == token_hash
            )
        )
    ).first()


async def waitlist_position(session: AsyncConnection, working_group_id: str, waitlist_seq: int) -> int:
    ahead = await session.scalar(_WAITLIST_AHEAD, {"wg_id": working_group_id, "seq": waitlist_seq})
    return int(ahead or 0) + 1


async def waitlist(session: AsyncConnection, working_group_id: str) -> Sequence[Row[Any]]:
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


async def confirmed_registrations(session: AsyncConnection, working_group_id: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.status == "confirmed")
            .order_by(registrations.c.confirmed_at)
        )
    ).all()


async def participants(session: AsyncConnection, working_group_id: str) -> Sequence[Row[Any]]:
    return (
        await session.execute(
            select(registrations)
            .where(registrations.c.working_group_id == working_group_id)
            .where(registrations.c.status.in_(("confirmed", "waitlisted")))
            .order_by(registrations.c.status, registrations.c.confirmed_at, registrations.c.waitlist_seq)
        )
    ).all()


async def meeting(
    session: AsyncConnection, working_group_id: str, number: int, *, for_update: bool = False
) -> Row[Any] | None:
    query = select(meetings).where(
        meetings.c.working_group_id == working_group_id, meetings.c.number == number
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def claim_expired(session: AsyncConnection, now: Any, batch: int) -> Sequence[Row[Any]]:
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


def _reminder_due(now: Any, lead: Any) -> Any:
    return and_(
        meetings.c.starts_at.is_not(None),
        meetings.c.cancelled.is_(False),
        meetings.c.starts_at > now,
        meetings.c.starts_at - lead <= now,
        meetings.c.reminder_sent_for.is_distinct_from(meetings.c.starts_at),
    )


async def meetings_due_for_reminder(session: AsyncConnection, now: Any, lead: Any) -> Sequence[Row[Any]]:
    """Candidates only (no lock): each is claimed with claim_reminder under its group's lock."""
    return (
        await session.execute(
            select(meetings.c.working_group_id, meetings.c.number).where(_reminder_due(now, lead))
        )
    ).all()


async def claim_reminder(
    session: AsyncConnection, working_group_id: str, number: int, now: Any, lead: Any
) -> Row[Any] | None:
    """Mark the meeting's date as reminded; None when another replica (or a change) got there first."""
    return (
        await session.execute(
            meetings.update()
            .where(meetings.c.working_group_id == working_group_id, meetings.c.number == number)
            .where(_reminder_due(now, lead))
            .values(reminder_sent_for=meetings.c.starts_at)
            .returning(meetings)
        )
    ).first()


async def claim_public_mail(
    session: AsyncConnection, registration_id: uuid.UUID, now: Any, interval: Any
) -> bool:
    """Record that a public POST mails this registration's address now; False when it was mailed within
    ``interval`` (then nothing is sent)."""
    claimed = await session.execute(
        update(registrations)
        .where(registrations.c.id == registration_id)
        .where(
            (registrations.c.public_mail_at.is_(None)) | (registrations.c.public_mail_at <= now - interval)
        )
        .values(public_mail_at=now)
        .returning(registrations.c.id)
    )
    return claimed.first() is not None


# --- a registration's states ----------------------------------------------------------------------------

# The intake (a public form's POST) is the measured hot path: its two statements are written for asyncpg and
# run on the driver connection, without BEGIN/COMMIT. The insert of the registration and its event is one
# statement, so it is atomic on its own; SQLAlchemy would add statement building and two round trips of a
# transaction to every registration (docs/performance.md has the figures).
_OPT_IN_MAILS_SENT = f"""
SELECT CASE WHEN $2::int > 0 THEN (SELECT count(*) FROM {registrations.fullname}
                                   WHERE mailbox_key = $1 AND public_mail_at > $3) ELSE 0 END AS to_mailbox,
       CASE WHEN $4::int > 0 THEN (SELECT count(*) FROM {registrations.fullname}
                                   WHERE public_mail_at > $5) ELSE 0 END AS to_all
"""
_NEW_COLUMNS = (
    ("id", "uuid"),
    ("working_group_id", "text"),
    ("status", "text"),
    ("name", "text"),
    ("email", "text"),
    ("email_key", "text"),
    ("mailbox_key", "text"),
    ("language", "text"),
    ("participant_type", "text"),
    ("organization", "text"),
    ("district", "text"),
    ("accessibility_needs", "text"),
    ("interpretation_language", "text"),
    ("token_hash", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("public_mail_at", "timestamptz"),
)
_INSERT_NEW = f"""
WITH inserted AS (
    INSERT INTO {registrations.fullname} ({", ".join(name for name, _ in _NEW_COLUMNS)})
    VALUES ({", ".join(f"${i}::{kind}" for i, (_, kind) in enumerate(_NEW_COLUMNS, start=1))})
    ON CONFLICT (working_group_id, email_key)
        WHERE status IN ('pending_confirmation', 'confirmed', 'waitlisted') DO NOTHING
    RETURNING id
), staged AS ({stage_from(outbox, "inserted", len(_NEW_COLUMNS) + 1)})
SELECT EXISTS (SELECT 1 FROM staged) AS inserted
"""


async def opt_in_mails_sent(
    conn: AsyncConnection,
    mailbox_key: str,
    mailbox_budget: int,
    mailbox_since: datetime,
    budget: int,
    budget_since: datetime,
) -> tuple[int, int]:
    """Opt-in mails public POSTs sent to the mailbox since ``mailbox_since`` and to anyone since
    ``budget_since``; a count whose budget is 0 (none) is not taken."""
    row = await (await driver_connection(conn)).fetchrow(
        _OPT_IN_MAILS_SENT, mailbox_key, mailbox_budget, mailbox_since, budget, budget_since
    )
    assert row is not None
    return int(row["to_mailbox"]), int(row["to_all"])


async def insert_registration(conn: AsyncConnection, values: dict[str, Any], event: OutboxRow) -> bool:
    """Insert a new registration with its outbox row, unless the address is already active in the working
    group (then nothing is inserted: False)."""
    row = await (await driver_connection(conn)).fetchrow(
        _INSERT_NEW, *(values[name] for name, _ in _NEW_COLUMNS), *event.parameters()
    )
    assert row is not None
    return bool(row["inserted"])


async def mark_cancelled(
    conn: AsyncConnection,
    registration_id: uuid.UUID,
    now: Any,
    new_token_hash: str | None = None,
    revoked_token_hash: str | None = None,
) -> None:
    """Cancelled. With the token hashes, the token is rotated, so the mailed link now only says
    "cancelled"."""
    tokens = (
        {}
        if new_token_hash is None
        else {"token_hash": new_token_hash, "revoked_token_hash": revoked_token_hash}
    )
    await conn.execute(
        registrations.update()
        .where(registrations.c.id == registration_id)
        .values(
            status="cancelled",
            seat=None,
            waitlist_seq=None,
            cancelled_at=now,
            expires_at=None,
            updated_at=now,
            **tokens,
        )
    )


# A confirmation's writes, one statement written for asyncpg: the registration (if still pending), the
# group's counters and the event. Every confirmation of a working group queues behind the group's row
# lock, held from the read that took it to the commit; each round trip in between is waited for by all
# the queue, so the writes go in one.
_STORE_CONFIRMATION = f"""
WITH decided AS (
    UPDATE {registrations.fullname}
    SET status = $2, seat = $3, waitlist_seq = $4, confirmed_at = clock_timestamp(), expires_at = NULL,
        updated_at = $5
    WHERE id = $1 AND status = 'pending_confirmation'
    RETURNING id
), counters AS (
    UPDATE {working_groups.fullname}
    SET confirmed_general = $7, confirmed_reserved = $8, waitlist_seq = $9, waitlisted = $10, updated_at = $5
    WHERE id = $6 AND EXISTS (SELECT 1 FROM decided)
    RETURNING id
), staged AS ({stage_from(outbox, "decided", 11)})
SELECT EXISTS (SELECT 1 FROM decided) AS decided
"""


async def store_confirmation(
    conn: AsyncConnection, registration_id: uuid.UUID, decided: Confirmation, now: datetime, event: OutboxRow
) -> bool:
    """Confirmed with a seat or waitlisted, with the group's counters after and the event, if the
    registration is still pending (the caller holds the group's lock); False when something else (a second
    click, the expiry job) decided first: then nothing is written."""
    group = decided.group
    row = await (await driver_connection(conn)).fetchrow(
        _STORE_CONFIRMATION,
        registration_id,
        decided.status,
        decided.seat,
        decided.waitlist_seq,
        now,
        group.id,
        group.confirmed_general,
        group.confirmed_reserved,
        group.waitlist_seq,
        group.waitlisted,
        *event.parameters(),
    )
    assert row is not None
    return bool(row["decided"])


async def mark_promoted(conn: AsyncConnection, registration_id: uuid.UUID, seat: str, now: Any) -> None:
    await conn.execute(
        registrations.update()
        .where(registrations.c.id == registration_id)
        .values(status="confirmed", seat=seat, waitlist_seq=None, updated_at=now)
    )


async def mark_expired(conn: AsyncConnection, registration_id: uuid.UUID, now: Any) -> None:
    """Expired, and the personal data deleted."""
    await conn.execute(
        registrations.update()
        .where(registrations.c.id == registration_id)
        .values(status="expired", **dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
    )


async def mark_mail_bounced(session: AsyncConnection, registration_id: Any, at: datetime) -> None:
    """A mail of the registration failed for good: staff see "bounced" on the participant list."""
    await session.execute(
        update(registrations)
        .where(registrations.c.id == registration_id)
        .values(mail_status="bounced", mail_bounced_at=func.coalesce(registrations.c.mail_bounced_at, at))
    )


async def stop_reminders(session: AsyncConnection, token_hash: str, at: datetime) -> bool:
    """No more reminders for the registration behind the link; False when the link is unknown."""
    result = await session.execute(
        update(registrations)
        .where(registrations.c.token_hash == token_hash)
        .values(reminders_stopped_at=func.coalesce(registrations.c.reminders_stopped_at, at))
        .returning(registrations.c.id)
    )
    return result.first() is not None
