"""What the outbox and the inbox keep, and for how long: the housekeeping job's statements."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Table, Text, delete, func, literal_column, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.links import without_links


async def forget_published(conn: AsyncConnection, outbox: Table, *, now: datetime, keep: timedelta) -> None:
    """Delete outbox rows published longer than ``keep`` ago; strip the links of the rest."""
    await conn.execute(delete(outbox).where(outbox.c.published_at < now - keep))
    # What stays until then keeps no working link (a value carrying a token becomes null) once it has
    # been published for a minute (a replay of what just went out still has it).
    await conn.execute(
        update(outbox)
        .where(outbox.c.published_at < now - timedelta(minutes=1))
        .where(func.strpos(outbox.c.payload.cast(Text), "token=") > 0)
        .values(payload=literal_column(without_links("payload")))
    )


async def forget_received(
    conn: AsyncConnection, inboxes: Iterable[Table], *, now: datetime, keep: timedelta
) -> None:
    """Delete inbox rows older than ``keep``: the inbox's retention is its deduplication window."""
    for inbox in {id(table): table for table in inboxes}.values():
        await conn.execute(delete(inbox).where(inbox.c.received_at < now - keep))
