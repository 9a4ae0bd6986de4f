"""All queries of the registration service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration.domain import ACTIVE_STATUSES, GroupCounters
from services.registration.models import (
    PERSONAL_DATA_COLUMNS,
    attendance,
    attendance_counts,
    meetings,
    minutes,
    outbox,
    registrations,
    working_groups,
)
from shared.db import driver_connection
from shared.outbox import stage_from


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

# The intake's one statement, written for asyncpg: the hourly opt-in budget, the registration and its
# event, in one round trip and without BEGIN/COMMIT (a single statement is atomic). The intake is the hot
# path of a public form, so it skips SQLAlchemy's statement building and the transaction's extra round
# trips; the README's performance section has the figures.
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
_BUDGET = len(_NEW_COLUMNS) + 1
_MAILBOX_KEY = 1 + [name for name, _ in _NEW_COLUMNS].index("mailbox_key")
# The mailbox's budget (registrations of this mailbox mailed from a public POST within the day) comes
# first; the global hourly cap is the last guard.
_SUBMIT = f"""
WITH mailbox AS (
    SELECT CASE WHEN ${_BUDGET + 2}::int <= 0 THEN true
                ELSE (SELECT count(*) FROM {registrations.fullname}
                      WHERE mailbox_key = ${_MAILBOX_KEY}::text
                        AND public_mail_at > ${_BUDGET + 3}::timestamptz) < ${_BUDGET + 2}::int
           END AS open
), budget AS (
    SELECT CASE WHEN ${_BUDGET}::int <= 0 THEN true
                ELSE (SELECT count(*) FROM {registrations.fullname}
                      WHERE public_mail_at > ${_BUDGET + 1}::timestamptz) < ${_BUDGET}::int
           END AS open
), inserted AS (
    INSERT INTO {registrations.fullname} ({", ".join(name for name, _ in _NEW_COLUMNS)})
    SELECT {", ".join(f"${i}::{kind}" for i, (_, kind) in enumerate(_NEW_COLUMNS, start=1))}
    FROM budget, mailbox WHERE budget.open AND mailbox.open
    ON CONFLICT (working_group_id, email_key)
        WHERE status IN ('pending_confirmation', 'confirmed', 'waitlisted') DO NOTHING
    RETURNING id
), staged AS ({stage_from(outbox, "inserted", _BUDGET + 4)})
SELECT (SELECT open FROM budget) AS open, (SELECT open FROM mailbox) AS mailbox_open,
       EXISTS (SELECT 1 FROM staged) AS inserted
"""


# A confirmation: the registration read without a lock, then the decision in the database (migration
# 0009, ``confirm_registration``), each a statement of its own on the driver connection.
_FOR_CONFIRMATION = f"""
SELECT r.id, r.working_group_id, r.status, r.expires_at, r.participant_type, r.name, r.email, r.language,
       r.check_in_code, w.catalog_version
FROM {registrations.fullname} r JOIN {working_groups.fullname} w ON w.id = r.working_group_id
WHERE r.token_hash = $1
"""


@dataclass(frozen=True, slots=True)
class Confirmation:
    """One confirmation to decide: the registration, the ``catalog_version`` its events were built for, and
    both possible events as ``outbox.staged_row`` values (the same id; the database writes one of them)."""

    registration_id: uuid.UUID
    catalog_version: int
    now: Any
    confirmed: tuple[Any, ...]
    waitlisted: tuple[Any, ...]


_CONFIRM = (
    "SELECT ordinal, outcome, seat, waitlist_position FROM "
    f"{registrations.schema}.confirm_registrations($1, $2, $3, $4, $5, $6::jsonb[], $7, $8::jsonb[], $9, $10)"
)


async def registration_for_confirmation(conn: AsyncConnection, token_hash: str) -> Any:
    """The registration of a confirm link with its working group's ``catalog_version``, or None."""
    return await (await driver_connection(conn)).fetchrow(_FOR_CONFIRMATION, token_hash)


async def decide_confirmations(
    conn: AsyncConnection, working_group_id: str, confirmations: Sequence[Confirmation]
) -> list[Any]:
    """Decide ``confirmations`` of one working group in the order given, under one lock and in one
    statement (so one commit): each confirmed with a seat or waitlisted, with the event of its outcome (the
    waitlist position is filled in by the database). Returns, for each, a record (outcome, seat,
    waitlist_position) with outcome ``confirmed``, ``waitlisted`` or ``stale`` (the meetings changed: build
    the events again), or None when the registration is no longer pending."""
    confirmed, waitlisted = confirmations[0].confirmed, confirmations[0].waitlisted
    rows = await (await driver_connection(conn)).fetch(
        _CONFIRM,
        working_group_id,
        [c.registration_id for c in confirmations],
        [c.now for c in confirmations],
        [c.catalog_version for c in confirmations],
        [c.confirmed[0] for c in confirmations],
        [c.confirmed[3] for c in confirmations],
        confirmed[2],
        [c.waitlisted[3] for c in confirmations],
        waitlisted[2],
        [c.confirmed[4] for c in confirmations],
    )
    decided: list[Any] = [None] * len(confirmations)
    for row in rows:
        decided[row["ordinal"] - 1] = row
    return decided


async def submit_registration(
    conn: AsyncConnection,
    values: dict[str, Any],
    event_row: tuple[Any, ...],
    budget: int,
    budget_since: Any,
    mailbox_budget: int = 0,
    mailbox_since: Any = None,
) -> tuple[bool, bool, bool]:
    """Insert a new registration with its outbox row unless the address is already active in the working
    group, ``mailbox_budget`` (> 0) opt-in mails went to its mailbox since ``mailbox_since``, or ``budget``
    (> 0) opt-in mails went out since ``budget_since``. Returns (budget open, mailbox open, inserted)."""
    driver = await driver_connection(conn)
    row = await driver.fetchrow(
        _SUBMIT,
        *(values[name] for name, _ in _NEW_COLUMNS),
        budget,
        budget_since,
        mailbox_budget,
        mailbox_since if mailbox_since is not None else budget_since,
        *event_row,
    )
    assert row is not None
    return bool(row["open"]), bool(row["mailbox_open"]), bool(row["inserted"])


async def mark_cancelled(
    conn: AsyncConnection, registration_id: uuid.UUID, now: Any, new_token_hash: str, revoked_token_hash: str
) -> None:
    """Cancelled; the token is rotated, so the mailed link now only says "cancelled"."""
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
            token_hash=new_token_hash,
            revoked_token_hash=revoked_token_hash,
        )
    )


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
