"""All queries of the notification service: the delivery log, which is also the queue of mails to send."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Text, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.domain import DUE_STATUSES, PERSONAL_CONTEXT_KEYS, SETTLED_STATUSES, Mark
from services.notification.models import bounce_mails, deliveries, erased_addresses, outbox, suppressions
from shared.addresses import normalised, sql_equals_address, sql_json_holds_address
from shared.db import deferred, driver_connection
from shared.links import without_links

_DELIVERY_COLUMNS = (
    ("id", "uuid"),
    ("dedup_key", "text"),
    ("event_id", "text"),
    ("event_type", "text"),
    ("template", "text"),
    ("language", "text"),
    ("recipient_email", "text"),
    ("recipient_name", "text"),
    ("message_id", "text"),
    ("context", "jsonb"),
    ("status", "text"),
)
# Any number of rows in one statement (their values as arrays), written for asyncpg: it runs for every
# batch of events (SQLAlchemy's layers cost more than the statement).
# Rows are numbered (``seq``) in the order given: the sender sends one person's mails in that order.
# Erasure wins over events in flight: a row whose recipient (by keyed hash) was erased after its event
# occurred is not recorded (an event without a time counts as older). Rows without a hash always are.
_FILTER_COLUMNS = (("recipient_hash", "text"), ("occurred_at", "timestamptz"))
_GIVEN_COLUMNS = _DELIVERY_COLUMNS + _FILTER_COLUMNS
# A mail to an address on the suppression list (by the same keyed hash) is recorded ``suppressed``: never sent,
# and staff see why.
SUPPRESSED_NOTE = "not sent: the address is on the suppression list (an earlier mail to it bounced)"
_INSERT_DELIVERIES = (
    f"INSERT INTO {deliveries.fullname} ({', '.join(name for name, _ in _DELIVERY_COLUMNS)}, last_error) "
    f"SELECT {', '.join(f'given.{name}' for name, _ in _DELIVERY_COLUMNS if name != 'status')}, "
    "CASE WHEN s.address_hash IS NULL THEN given.status ELSE 'suppressed' END, "
    f"CASE WHEN s.address_hash IS NULL THEN NULL ELSE '{SUPPRESSED_NOTE}' END FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_GIVEN_COLUMNS, start=1))
    + f") WITH ORDINALITY AS given({', '.join(name for name, _ in _GIVEN_COLUMNS)}, position) "
    f"LEFT JOIN {suppressions.fullname} s ON s.address_hash = given.recipient_hash "
    f"WHERE NOT EXISTS (SELECT FROM {erased_addresses.fullname} e WHERE e.address_hash = given.recipient_hash "
    "AND (given.occurred_at IS NULL OR given.occurred_at <= e.erased_at)) "
    "ORDER BY position ON CONFLICT (dedup_key) DO NOTHING"
)


async def insert_deliveries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Record intended mails (``status`` defaults to pending); one already recorded under the same
    ``dedup_key`` stays as it is, and one with a ``recipient_hash`` of an address erased after its event's
    ``occurred_at`` is dropped. In the caller's transaction, which must have begun."""
    columns = {name: [row.get(name) for row in rows] for name, _ in _GIVEN_COLUMNS}
    columns["context"] = [None if c is None else orjson.dumps(c).decode() for c in columns["context"]]
    columns["status"] = [status or "pending" for status in columns["status"]]
    await (await driver_connection(conn)).execute(_INSERT_DELIVERIES, *columns.values())


async def insert_delivery(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """One intended mail, recorded at once (see :func:`insert_deliveries`)."""
    await insert_deliveries(conn, [values])


def stage_delivery(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """One intended mail, recorded with the others of the unit in one statement when its
    ``deferred_writes`` block ends (a consumer's batch of events)."""
    deferred(conn, insert_deliveries).append(values)


class ClaimedRow:
    """A claimed delivery row: its columns as attributes, the context decoded."""

    __slots__ = ("_values",)

    def __init__(self, record: Any) -> None:
        values = dict(record)
        context = values.get("context")
        if isinstance(context, str):
            values["context"] = orjson.loads(context)
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


_DUE = ", ".join(f"'{status}'" for status in DUE_STATUSES)
# The sender's claim in one transaction of two statements, written for asyncpg (it runs for every few
# mails; SQLAlchemy's layers cost more than the statements).
_EXPIRE_LEASES = (
    f"UPDATE {deliveries.fullname} SET status = 'unknown', last_error = 'sender stopped while sending', "
    "updated_at = now() WHERE status = 'sending' AND lease_until < now()"
)
_CLAIM = f"""
WITH due AS (
    SELECT id, status AS previous_status FROM {deliveries.fullname}
    WHERE status IN ({_DUE}) AND next_attempt_at <= now()
    ORDER BY next_attempt_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED
)
UPDATE {deliveries.fullname} d
SET status = 'sending', lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1,
    updated_at = now()
FROM due WHERE d.id = due.id
RETURNING d.*, due.previous_status
"""


async def claim_due(
    conn: AsyncConnection, lease_seconds: float, limit: int, expire_leases: bool = True
) -> list[ClaimedRow]:
    """Claim up to ``limit`` due rows for sending (``FOR UPDATE SKIP LOCKED``: replicas share the work),
    counting the attempt; first, with ``expire_leases``, rows whose lease ran out become ``unknown``. Every
    time here is the database's clock, so replicas whose clocks disagree never take each other's rows
    early. Each row comes back with ``previous_status``, the state it was claimed from. Its own transaction
    (a savepoint if the caller began one); without ``expire_leases`` a single statement, one round trip."""
    db = await driver_connection(conn)
    if not expire_leases:
        return _in_order(await db.fetch(_CLAIM, limit, float(lease_seconds)))
    async with db.transaction():
        # A lease that ran out means a sender died mid-send: whether the relay took the mail is unknown.
        await db.execute(_EXPIRE_LEASES)
        return _in_order(await db.fetch(_CLAIM, limit, float(lease_seconds)))


def _in_order(records: list[Any]) -> list[ClaimedRow]:
    """The claimed rows in the order they fell due and were recorded: ``UPDATE … RETURNING`` returns
    them in whatever order its join produced, and the sender starts one person's mails in list order."""
    return [ClaimedRow(r) for r in sorted(records, key=lambda r: (r["next_attempt_at"], r["seq"]))]


async def renew_lease(conn: AsyncConnection, delivery_id: Any, attempt: int, lease_seconds: float) -> bool:
    """Extend a claim right before its mail goes out; False when the claim is no longer this sender's
    (its lease ran out while it waited, and the row was taken over or declared ``unknown``)."""
    renewed = await conn.execute(
        update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.attempts == attempt,
            deliveries.c.status == "sending",
            deliveries.c.lease_until >= func.now(),
        )
        .values(lease_until=func.now() + timedelta(seconds=lease_seconds))
        .returning(deliveries.c.id)
    )
    return renewed.first() is not None


async def due_count(conn: AsyncConnection) -> int:
    """Mails due now (the sender's backlog)."""
    return int(
        await conn.scalar(
            select(func.count())
            .select_from(deliveries)
            .where(deliveries.c.status.in_(DUE_STATUSES), deliveries.c.next_attempt_at <= func.now())
        )
        or 0
    )


# One statement for any number of marks (their values as arrays), fenced by the attempt: a mark lands while
# the row is still 'sending' under this claim, or 'unknown' because the lease ran out and nobody claimed it
# since (the late answer is then still the truth, and spares the recipient a copy). Written for asyncpg: it
# runs for every few mails, and as one statement it needs no transaction of its own.
# A mail that went out (or never will) keeps no working link in its row: every value of its context that
# carries a token becomes null in the same statement (a context without one is not even parsed).
_MARK = f"""
UPDATE {deliveries.fullname} d
SET status = m.status, last_error = m.error, subject = coalesce(m.subject, d.subject),
    next_attempt_at = coalesce(m.next_attempt_at, d.next_attempt_at), sent_at = m.sent_at,
    lease_until = NULL, updated_at = m.at,
    context = CASE WHEN m.status IN ({", ".join(f"'{s}'" for s in SETTLED_STATUSES)})
                   THEN {without_links("d.context")} ELSE d.context END
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::timestamptz[], $8::timestamptz[])
     AS m(id, attempt, status, error, subject, next_attempt_at, sent_at, at)
WHERE d.id = m.id AND d.attempts = m.attempt AND d.status IN ('sending', 'unknown')
"""


async def write_marks(conn: AsyncConnection, marks: Sequence[Mark]) -> None:
    """Write each mark to its row under the same attempt (one per claim of a row)."""
    await (await driver_connection(conn)).execute(
        _MARK,
        [m.id for m in marks],
        [m.attempt for m in marks],
        [m.status for m in marks],
        [m.last_error for m in marks],
        [m.subject for m in marks],
        [m.next_attempt_at for m in marks],
        [m.sent_at for m in marks],
        [m.at for m in marks],
    )


async def purge_created_before(conn: AsyncConnection, cutoff: datetime) -> None:
    await conn.execute(delete(deliveries).where(deliveries.c.created_at < cutoff))


async def list_deliveries(
    conn: AsyncConnection, *, recipient: str | None, event_id: str | None, status: str | None, limit: int
) -> Sequence[Row[Any]]:
    query = select(deliveries).order_by(deliveries.c.created_at.desc()).limit(limit)
    if recipient:
        query = query.where(sql_equals_address(deliveries.c.recipient_email, normalised(recipient)))
    if event_id:
        query = query.where(deliveries.c.event_id == event_id)
    if status:
        query = query.where(deliveries.c.status == status)
    return (await conn.execute(query)).all()


# --- erasure on request and retention ----------------------------------------------------------------------


def _holds_address(address: str) -> Any:
    """The rows of mails to ``address`` (normalised): its recipient, or the deduplication key
    ``{event_id}:{template}:{address}`` whose third part is the address, or a context that holds the address
    as a value. Exact matches only: never a row of an address that merely contains this one."""
    return or_(
        sql_equals_address(deliveries.c.recipient_email, address),
        func.regexp_replace(deliveries.c.dedup_key, "^[^:]*:[^:]*:", "") == address,
        sql_json_holds_address(deliveries.c.context, address),
    )


async def delete_mentioning(conn: AsyncConnection, address: str) -> tuple[int, datetime | None]:
    """Delete every delivery-log row of ``address`` (normalised; see :func:`_holds_address`) and every
    published event carrying it as a value. A relay answer of another row that quotes the address (as a
    word of its own) loses its text, not its row. Returns how many records went and, if a sender had
    claimed one of the rows (its mail may be going out right now), when that claim's lease ends."""
    removed = (
        await conn.execute(
            deliveries.delete()
            .where(_holds_address(address))
            .returning(deliveries.c.status, deliveries.c.lease_until)
        )
    ).all()
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.last_error.op("~*")(_quoted_in_text(address)))
        .values(last_error=None)
    )
    events = await conn.execute(
        outbox.delete()
        .where(outbox.c.published_at.is_not(None))
        .where(sql_json_holds_address(outbox.c.payload, address))
        .returning(outbox.c.id)
    )
    leases = [r.lease_until for r in removed if r.status == "sending" and r.lease_until is not None]
    return len(removed) + len(events.all()), max(leases, default=None)


async def remember_erased(conn: AsyncConnection, address_hash: str, erased_at: datetime) -> None:
    """Remember an erased address by its keyed hash (a later erasure of the same address moves the time)."""
    statement = insert(erased_addresses).values(address_hash=address_hash, erased_at=erased_at)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[erased_addresses.c.address_hash],
            set_={
                "erased_at": func.greatest(erased_addresses.c.erased_at, statement.excluded.erased_at),
                "recorded_at": func.now(),
            },
        )
    )


async def forget_erased_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Drop the hashes of addresses erased (recorded) before ``cutoff``."""
    result = await conn.execute(
        delete(erased_addresses).where(erased_addresses.c.recorded_at < cutoff).returning(literal(1))
    )
    return len(result.all())


async def not_due_before(conn: AsyncConnection, dedup_key: str, at: datetime) -> None:
    """The mail under ``dedup_key`` becomes due no earlier than ``at``."""
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.dedup_key == dedup_key)
        .values(next_attempt_at=func.greatest(deliveries.c.next_attempt_at, at))
    )


def _quoted_in_text(address: str) -> str:
    """A regular expression (Postgres ARE) for ``address`` as a word of its own within a text, e.g.
    ``<a.s@example.org>`` in a relay's answer, not within ``maria.s@example.org``."""
    escaped = "".join(c if c.isalnum() else "\\" + c for c in address)
    return f"(^|[^a-z0-9._%+\\-]){escaped}($|[^a-z0-9.\\-]|\\.($|[^a-z0-9]))"


async def release_held(conn: AsyncConnection, dedup_key: str) -> None:
    """A held mail becomes due now."""
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.dedup_key == dedup_key)
        .where(deliveries.c.status == "held")
        # Not before a mail to the address that a sender had claimed when it was erased has gone.
        .values(
            status="pending",
            next_attempt_at=func.greatest(func.now(), deliveries.c.next_attempt_at),
            updated_at=func.now(),
        )
    )


async def forget_recipients_before(conn: AsyncConnection, cutoff: datetime, now: datetime) -> int:
    """Settled rows recorded before ``cutoff`` lose their recipient, links and the event's personal data;
    the deduplication key (which holds the address) becomes the row's id. One conditional UPDATE, so
    replicas running it together do the work once."""
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.created_at < cutoff)
        .where(deliveries.c.status.in_(SETTLED_STATUSES))
        .where(deliveries.c.recipient_email.is_not(None))
        .values(
            recipient_email=None,
            recipient_name=None,
            last_error=None,
            dedup_key=literal("forgotten:") + deliveries.c.id.cast(Text),
            context=deliveries.c.context.op("-")(literal(PERSONAL_CONTEXT_KEYS, type_=ARRAY(Text))),
            updated_at=now,
        )
        .returning(deliveries.c.id)
    )
    return len(result.all())


# --- bounces and the suppression list ----------------------------------------------------------------------


async def delivery(conn: AsyncConnection, delivery_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).first()


async def mark_bounced(conn: AsyncConnection, delivery_id: uuid.UUID, error: str) -> Row[Any] | None:
    """The delivery bounced for good (once: a second bounce of it changes nothing). Returns its row, or None
    when it had bounced already. Its context keeps no working link, as for any settled mail."""
    return (
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.status != "bounced")
            .values(
                status="bounced",
                last_error=error,
                lease_until=None,
                updated_at=func.now(),
                context=text(without_links("context")),
            )
            .returning(deliveries)
        )
    ).first()


async def note_temporary_bounce(conn: AsyncConnection, delivery_id: uuid.UUID, error: str) -> None:
    """A temporary failure reported by a bounce: recorded on the delivery, nothing else (the relay retries)."""
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status != "bounced")
        .values(last_error=error, updated_at=func.now())
    )


async def suppress(
    conn: AsyncConnection, address_hash: str, reason: str, source: str, delivery_id: uuid.UUID | None
) -> None:
    """Put an address (its keyed hash) on the suppression list; one already there keeps its first entry."""
    await conn.execute(
        insert(suppressions)
        .values(address_hash=address_hash, reason=reason, source=source, delivery_id=delivery_id)
        .on_conflict_do_nothing(index_elements=[suppressions.c.address_hash])
    )


async def suppress_due(conn: AsyncConnection, address: str) -> int:
    """Mails still due for ``address`` (normalised) are not sent: they become ``suppressed``."""
    result = await conn.execute(
        update(deliveries)
        .where(sql_equals_address(deliveries.c.recipient_email, address))
        .where(deliveries.c.status.in_(DUE_STATUSES))
        .values(status="suppressed", last_error=SUPPRESSED_NOTE, updated_at=func.now())
        .returning(deliveries.c.id)
    )
    return len(result.all())


async def suppression(conn: AsyncConnection, address_hash: str) -> Row[Any] | None:
    return (
        await conn.execute(select(suppressions).where(suppressions.c.address_hash == address_hash))
    ).first()


async def unsuppress(conn: AsyncConnection, address_hash: str) -> bool:
    result = await conn.execute(
        delete(suppressions).where(suppressions.c.address_hash == address_hash).returning(literal(1))
    )
    return bool(result.all())


async def record_bounce_mail(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(bounce_mails).values(id=uuid.uuid4(), **values))


async def purge_bounce_mails_before(conn: AsyncConnection, cutoff: datetime) -> None:
    await conn.execute(delete(bounce_mails).where(bounce_mails.c.received_at < cutoff))


async def erase_bounce_records(conn: AsyncConnection, address: str, address_hash: str) -> int:
    """Erasure on request: the address's entry on the suppression list, and every kept bounce mail whose
    bytes mention it as a word of its own (any letter case; the bytes read as ASCII), not one that merely
    contains it. Returns how many records went."""
    listed = await conn.execute(
        delete(suppressions).where(suppressions.c.address_hash == address_hash).returning(literal(1))
    )
    kept = await conn.execute(
        delete(bounce_mails)
        .where(bounce_mails.c.raw.is_not(None))
        .where(func.encode(bounce_mails.c.raw, "escape").op("~*")(_quoted_in_text(address)))
        .returning(literal(1))
    )
    return len(listed.all()) + len(kept.all())


async def forget_bounce_mails_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Retention: a kept bounce mail loses its bytes (which may quote an address) after the retention period;
    its outcome, status and diagnostic stay until the purge."""
    result = await conn.execute(
        update(bounce_mails)
        .where(bounce_mails.c.received_at < cutoff, bounce_mails.c.raw.is_not(None))
        .values(raw=None)
        .returning(literal(1))
    )
    return len(result.all())


async def list_bounce_mails(conn: AsyncConnection, outcome: str | None, limit: int) -> Sequence[Row[Any]]:
    query = select(bounce_mails).order_by(bounce_mails.c.received_at.desc()).limit(limit)
    if outcome:
        query = query.where(bounce_mails.c.outcome == outcome)
    return (await conn.execute(query)).all()
