"""Async database access bound to one service's login role and schema."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from sqlalchemy import MetaData, event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.observability import reraise_if_cancelled

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A pooled connection idle for longer than this is pinged when it is checked out: after a database restart
# it would otherwise fail its first statement. A busy pool never waits this long, so the hot path pays
# nothing; the runtime's database watch also throws the whole pool away once an outage is over.
IDLE_PING_SECONDS = 10.0


def service_metadata(schema: str) -> MetaData:
    """The MetaData of a service: every table lives in the service's own schema."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` form of a SQLAlchemy URL, for raw asyncpg connections (LISTEN).

    A multi-host URL (a primary and its standbys) is written for SQLAlchemy as
    ``postgresql+asyncpg://user:pw@/db?host=a:5432&host=b:5432&target_session_attrs=read-write``; asyncpg
    keeps only the last of repeated query values, so its hosts go into the netloc, comma-separated
    (``user:pw@a:5432,b:5432/db``), where asyncpg tries them in turn."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = [value for key, value in query if key == "host"]
    if len(hosts) < 2 or parts.hostname:
        return dsn
    auth = parts.netloc.rpartition("@")[0]
    netloc = (auth + "@" if auth else "") + ",".join(hosts)
    rest = urlencode([(key, value) for key, value in query if key != "host"])
    return urlunsplit((parts.scheme, netloc, parts.path, rest, parts.fragment))


def create_engine(
    url: str, schema: str, pool_size: int = 10, statement_timeout_ms: int = 30_000
) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        # No ping per checkout (a round trip per transaction): see IDLE_PING_SECONDS instead.
        pool_recycle=1800,
        # Bound parameters are personal data (names, addresses, health needs): never in logs or errors.
        hide_parameters=True,
        connect_args={
            "server_settings": {
                "search_path": schema,
                "application_name": f"mitwirkung-{schema}",
                # No statement runs longer than this, whoever holds a lock or whatever the plan.
                "statement_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(statement_timeout_ms * 2),
            },
            "timeout": 10,  # establishing a connection
            # The client side of the same bound: a server that stops answering (a dead network path) does
            # not hold a statement forever. Enforced by asyncpg's protocol with a timer, not a task.
            "command_timeout": statement_timeout_ms / 1000 + 5,
        },
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:
            # The pool replaces the connection and tries again with a fresh one.
            raise exc.DisconnectionError() from error


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    exc.TimeoutError,  # the pool had no connection to give
    exc.DisconnectionError,
    exc.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def _connection_left_broken(error: BaseException) -> bool:
    """asyncpg's answer on a pooled connection the server gave up on while it sat idle: the server's
    FATAL message (``terminating connection due to administrator command``, a primary shutting down for a
    failover) left the protocol waiting for a reply that never comes, and the next statement is refused
    before anything is sent. Likewise no host of a multi-host URL taking writes (the standby not promoted
    yet)."""
    if isinstance(error, asyncpg.exceptions.TargetServerAttributeNotMatched):
        return True
    return isinstance(error, asyncpg.InternalClientError) and "another operation" in str(error)


def is_infrastructure_error(error: BaseException) -> bool:
    """True when ``error`` says the database (or the network to it) is unavailable, not that a statement or
    the data was wrong: connection refused or reset, a connection that went away, no pooled connection
    within the pool timeout, a connection attempt that timed out."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, INFRASTRUCTURE_ERRORS) or _connection_left_broken(current):
            return True
        current = current.__cause__ or current.__context__
    return False


# A unit of work is a plain SQLAlchemy Core connection in a transaction:
#     async with session_factory() as session, session.begin(): ...
# No ORM session: the services use Core statements only, and the ORM's session bookkeeping cost about a
# tenth of a registration request's CPU time.
SessionFactory: TypeAlias = Callable[[], AsyncConnection]


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return engine.connect


async def driver_connection(session: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a unit of work, for the few hot statements written by hand (the
    intake, the confirmation: see the repositories). A statement sent on it joins the unit's transaction
    once SQLAlchemy has begun one; before that (SQLAlchemy begins lazily, on its first statement) it
    commits on its own, so a single hand-written statement that does all the writing needs no BEGIN and
    COMMIT round trips and is still atomic."""
    sync = session.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        # Checked out and valid: reading the attribute does no I/O, so no greenlet is needed (that is what
        # ``get_raw_connection`` costs, about a tenth of a short request's CPU time).
        raw = sync.connection
    else:
        raw = await session.get_raw_connection()  # (re)connects, or raises what SQLAlchemy raises
    connection: asyncpg.Connection = raw.driver_connection
    return connection


async def discard_connection(session: AsyncConnection) -> None:
    """Keeps the connection under ``session`` out of the pool: after an infrastructure error on a
    statement written by hand (SQLAlchemy never saw it, so it would pool the connection again) the next
    unit of work would get the dead or stuck connection and fail too. A new one is made instead."""
    with contextlib.suppress(Exception):
        await session.invalidate()


# --- writes gathered into one statement per unit of work ----------------------------------------------------

_DEFERRED = "mitwirkung_deferred_writes"
Flush: TypeAlias = Callable[[AsyncConnection, list[Any]], Awaitable[None]]


@asynccontextmanager
async def deferred_writes(session: AsyncConnection) -> AsyncIterator[None]:
    """Within this block, rows handed to :func:`deferred` are written when the block ends without an error,
    each kind by one statement (``flush(session, rows)``), in the unit's transaction: a consumer's batch
    of events then costs one round trip per kind of row, not one per row. On an error nothing is written
    and the rows are dropped with the rolled-back unit."""
    pending: dict[Flush, list[Any]] = {}
    session.info[_DEFERRED] = pending
    try:
        yield
        if (
            pending
            and session.in_transaction()
            and not (await driver_connection(session)).is_in_transaction()
        ):
            # SQLAlchemy sends BEGIN with the unit's first statement: make the writes part of the unit.
            await session.execute(text("SELECT 1"))
        for flush, rows in pending.items():
            await flush(session, rows)
    finally:
        session.info.pop(_DEFERRED, None)


def deferred(session: AsyncConnection, flush: Flush) -> list[Any]:
    """The rows that ``flush`` will write at the end of the enclosing :func:`deferred_writes` block (append
    to them). Outside such a block this raises: rows handed over would never be written."""
    pending: dict[Flush, list[Any]] | None = session.info.get(_DEFERRED)
    if pending is None:
        raise RuntimeError("deferred writes need an enclosing deferred_writes(session) block")
    return pending.setdefault(flush, [])


class DatabaseSignal:
    """A wake-up call between processes over Postgres ``LISTEN/NOTIFY``, on a connection of its own
    (autocommit, outside any business transaction: a NOTIFY inside one holds a database-wide lock until it
    commits).

    ``send()`` is for a synchronous hook (an ``after_commit``): it never waits. At most one NOTIFY is in
    flight; whatever is sent meanwhile becomes one more after it, at least ``min_interval`` seconds later.
    ``listen(callback)`` calls ``callback`` on every notification, and once when the connection is lost;
    calling it again reconnects a lost connection. A signal is only a hint: one sent while nobody listened, or while
    the database was away, is lost, so a listener still polls.
    """

    def __init__(self, database_url: str, channel: str, min_interval: float = 0.005) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.channel = channel
        self.min_interval = min_interval
        self._connection: asyncpg.Connection | None = None
        self._callback: Callable[[], None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._again = False

    async def _connected(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = None
            connection = await asyncpg.connect(self.dsn, timeout=5)
            if self._callback is not None:
                callback = self._callback
                await connection.add_listener(self.channel, lambda *_: callback())
                # A lost connection hears nothing more: the listener is called, so that it looks for
                # what it may have missed, and listens again.
                connection.add_termination_listener(lambda *_: callback())
            self._connection = connection
        return self._connection

    async def listen(self, callback: Callable[[], None]) -> bool:
        """Listen (again, if the connection was lost); False while the database cannot be reached."""
        if self._callback != callback and self._connection is not None:
            await self.close()
        self._callback = callback
        try:
            await self._connected()
            return True
        except Exception as exc:
            reraise_if_cancelled(exc)
            return False

    def send(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._again = True
            return
        self._again = False
        self._sender = asyncio.get_running_loop().create_task(self._send(), name=f"notify-{self.channel}")

    async def notify(self) -> None:
        """One NOTIFY, now (raises if the database cannot be reached)."""
        await (await self._connected()).execute(f'NOTIFY "{self.channel}"')

    async def _send(self) -> None:
        while True:
            try:
                await self.notify()
            except Exception as exc:
                reraise_if_cancelled(exc)
                self._connection = None  # the listener's poll covers what was lost
            await asyncio.sleep(self.min_interval)
            if not self._again:
                return
            self._again = False

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
            self._sender = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
            self._connection = None
