"""A consumer's batch of events records its mails with one statement, in the batch's transaction."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.notification import repository as repo
from services.notification.models import SCHEMA
from shared.db import asyncpg_dsn, create_engine, create_session_factory, deferred, deferred_writes
from tests.conftest import unique_email


def _row(email: str) -> dict:
    key = f"test:{uuid.uuid4()}"
    return {
        "id": uuid.uuid4(),
        "dedup_key": key,
        "event_id": str(uuid.uuid4()),
        "event_type": "registration.submitted",
        "template": "registration_submitted",
        "language": "de",
        "recipient_email": email,
        "recipient_name": "Ayşe",
        "message_id": f"<{uuid.uuid4().hex}@example.org>",
        "context": {"note": "ü"},
    }


async def _statuses(settings, emails: list[str]) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT status FROM notification.deliveries WHERE recipient_email = ANY($1::text[])", emails
        )
    finally:
        await conn.close()
    return [r["status"] for r in rows]


async def test_rows_are_written_together_when_the_unit_ends_and_dropped_with_an_error(notification_settings):
    engine = create_engine(notification_settings.database_url, SCHEMA, 1)  # one connection: reused below
    session_factory = create_session_factory(engine)
    flushes: list[int] = []

    async def counting(conn, rows) -> None:
        flushes.append(len(rows))
        await repo.insert_deliveries(conn, rows)

    kept = [unique_email("batch") for _ in range(3)]
    dropped = unique_email("dropped")
    try:
        async with session_factory() as session, session.begin(), deferred_writes(session):
            for email in kept:
                deferred(session, counting).append(_row(email))
            assert await _statuses(notification_settings, kept) == []  # nothing before the unit ends
        assert flushes == [3]
        assert await _statuses(notification_settings, kept) == ["pending"] * 3

        with pytest.raises(RuntimeError, match="handler failed"):
            async with session_factory() as session, session.begin(), deferred_writes(session):
                deferred(session, counting).append(_row(dropped))
                raise RuntimeError("handler failed")
        # The next unit on the same connection starts empty: the failed unit's rows are gone for good.
        async with session_factory() as session, session.begin(), deferred_writes(session):
            pass
        assert flushes == [3]
        assert await _statuses(notification_settings, [dropped]) == []

        async with session_factory() as session:
            with pytest.raises(RuntimeError, match="deferred_writes"):
                deferred(session, counting)
    finally:
        await engine.dispose()


async def test_one_persons_mails_recorded_in_one_batch_are_claimed_in_the_order_recorded(
    notification_settings,
):
    """A receipt and the decision on it can arrive in one consumer batch: one INSERT, one transaction,
    one ``now()``. The sender must still get the receipt first (it starts one person's mails in the
    order it was handed them), however the database happens to store or return the rows."""
    engine = create_engine(notification_settings.database_url, SCHEMA, 2)
    session_factory = create_session_factory(engine)
    people = [unique_email("order") for _ in range(60)]
    try:
        async with session_factory() as session, session.begin(), deferred_writes(session):
            for email in people:
                repo.stage_delivery(session, {**_row(email), "template": "proposal_submitted"})
                repo.stage_delivery(session, {**_row(email), "template": "proposal_rejected"})
        claimed = []
        async with session_factory() as session:
            # Everything due at once, as a sender with room for all of it claims (older rows of other
            # tests may come along; they are not looked at).
            claimed = await repo.claim_due(session, 60.0, 10_000)
    finally:
        await engine.dispose()
    mine = [(row.recipient_email, row.template) for row in claimed if row.recipient_email in people]
    assert len(mine) == 2 * len(people)
    for email in people:
        assert [t for e, t in mine if e == email] == ["proposal_submitted", "proposal_rejected"], email
