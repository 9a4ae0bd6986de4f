"""Database bootstrap (database, login roles, schemas) and Alembic migrations, per service.

Each service owns one schema and logs in with its own role, which owns that schema and nothing else; so
one service's role cannot read another's tables. Each service's Alembic version table lives in its own
schema. The bootstrap runs as a database administrator; the migrations run as the service's role, so the
tables belong to it.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import async_engine_from_config

from shared.db import asyncpg_dsn

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class ServiceDatabase:
    service: str
    database_url: str

    @property
    def schema(self) -> str:
        return self.service


def _ident(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def bootstrap(admin_url: str, services: list[ServiceDatabase]) -> None:
    """Create the database, each service's login role and its schema; idempotent."""
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        for svc in services:
            url = make_url(svc.database_url)
            database, role, password = url.database or "mitwirkung", url.username or svc.service, url.password
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                await admin.execute(f"CREATE DATABASE {_ident(database)}")
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            password_sql = f" PASSWORD {_literal(password)}" if password else ""
            await admin.execute(
                f"{verb} ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{password_sql}"
            )
    finally:
        await admin.close()

    for svc in services:
        url = make_url(svc.database_url)
        target = make_url(admin_url).set(database=url.database)
        conn = await asyncpg.connect(asyncpg_dsn(target.render_as_string(hide_password=False)))
        try:
            role, schema = _ident(url.username or svc.service), _ident(svc.schema)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}")
            await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {role}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
            await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
            await conn.execute(f"ALTER ROLE {role} SET search_path = {schema}")
        finally:
            await conn.close()


def alembic_config(service: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = service
    return cfg


def migrate(service: str, database_url: str, revision: str = "head") -> None:
    """Upgrade one service's schema; blocking (Alembic runs its own event loop in env.py)."""
    command.upgrade(alembic_config(service, database_url), revision)


def run_alembic_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    config = context.config
    schema = config.attributes.get("schema") or metadata.schema
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=False,
            compare_type=True,
            include_name=lambda name, type_, parent: not (type_ == "table" and name == "alembic_version"),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            {"sqlalchemy.url": url},
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
            connect_args={"server_settings": {"search_path": schema}},
        )
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table_schema=schema, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())
