"""The unit of work: one use case's statements commit together or not at all.

Requests enter through a FIFO gate a little smaller than the connection pool. The pool's own queue lets
newcomers overtake waiters, so under load a few requests would wait far longer than the rest; the gate
serves them in order of arrival. The connections it leaves free are for the relay, consumers and jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import SessionFactory, discard_connection, is_infrastructure_error
from shared.outbox import OUTBOX_PENDING, OutboxRelay

# Pool connections the gate leaves to the relay, the consumers and the jobs.
RESERVED_FOR_WORKERS = 4


class Transactions:
    """Units of work on one service's pool, handed out first come, first served."""

    def __init__(self, session_factory: SessionFactory, pool_size: int) -> None:
        self._session_factory = session_factory
        self._gate_size = max(1, pool_size - RESERVED_FOR_WORKERS)
        self._gate: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def unit(self, relay: OutboxRelay | None) -> AsyncIterator[AsyncConnection]:
        """Everything done with the session commits together, or nothing does.

        ``relay`` is woken when the unit stored events without a transaction of its own (see below); a
        unit that committed wakes it through ``wake_relay_after_commit``.
        """
        if self._gate is None:
            self._gate = asyncio.Semaphore(self._gate_size)
        async with self._gate, self._session_factory() as session:
            # SQLAlchemy begins on the unit's first statement and the unit commits what was begun; an
            # exception closes the connection unbegun or rolled back. A unit whose only statement was
            # written by hand (the intake) thus sends neither BEGIN nor COMMIT: that statement committed
            # on its own.
            try:
                yield session
                began = session.in_transaction()
                if began:
                    await session.commit()
            except Exception as exc:
                if is_infrastructure_error(exc):
                    await discard_connection(session)
                raise
            if not began and session.info.pop(OUTBOX_PENDING, False) and relay is not None:
                relay.wake()
