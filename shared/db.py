"""Async database access bound to one service's login role and schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """The MetaData of a service: every table lives in the service's own schema."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` form of a SQLAlchemy URL, for raw asyncpg connections (LISTEN)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def create_engine(url: str, schema: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        # No ping per checkout (a round trip per transaction); a dropped connection is invalidated on use.
        pool_recycle=1800,
        # Bound parameters are personal data (names, addresses, health needs): never in logs or errors.
        hide_parameters=True,
        connect_args={"server_settings": {"search_path": schema, "application_name": f"mitwirkung-{schema}"}},
    )


# A unit of work is a plain SQLAlchemy Core connection in a transaction:
#     async with session_factory() as session, session.begin(): ...
# No ORM session: the services use Core statements only, and the ORM's session bookkeeping cost about a
# tenth of a registration request's CPU time.
SessionFactory: TypeAlias = Callable[[], AsyncConnection]


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return engine.connect
