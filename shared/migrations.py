"""Database bootstrap (database, login roles, schemas) and Alembic migrations, per service.

Each service has two login roles: a *migrator* that owns the service's schema and its tables (and runs
the Alembic migrations), and the *runtime* role the service logs in with, which owns nothing. The runtime
role gets what the service needs and no more: SELECT, INSERT, UPDATE, DELETE on its own tables, only
INSERT and SELECT on an append-only audit log, nothing on another service's schema. Not owning a table, it
can neither TRUNCATE it, nor disable its triggers, nor alter or drop it. Each service's Alembic version
table lives in its own schema. The bootstrap runs as a database administrator.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


# Tables the runtime role may only append to and read.
# Tables the runtime role may only INSERT into and SELECT from (triggers refuse changes to the owner too).
APPEND_ONLY_TABLES = ("audit_log", "proposal_history")

# One advisory lock key for every schema change of a database (bootstrap of schemas, migrations, grants):
# runs that start together (two migration Jobs, a Job and a developer) take turns; the later one then finds
# nothing left to do. Advisory locks are local to a database, so test databases do not wait for each other.
MIGRATION_LOCK_KEY = 0x6D69_7477  # "mitw"


class RoleMissing(RuntimeError):
    """A login role that the platform (CloudNativePG's managed roles) should have made does not exist."""


@dataclass(frozen=True)
class ServiceDatabase:
    service: str
    database_url: str  # the runtime role's
    migrator_url: str = ""  # the schema owner's; empty: derived with migrator_url_for

    @property
    def schema(self) -> str:
        return self.service

    @property
    def owner_url(self) -> str:
        return self.migrator_url or migrator_url_for(self.database_url)


def migrator_url_for(database_url: str) -> str:
    """The development default of a migrator's URL: the runtime role's name and password + ``_migrator``."""
    url = make_url(database_url)
    user = f"{url.username}_migrator"
    password = f"{url.password}_migrator" if url.password else None
    return url.set(username=user, password=password).render_as_string(hide_password=False)


def _ident(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _ensure_role(admin: asyncpg.Connection, database_url: str, create: bool = True) -> None:
    """Make the role if it is missing, with the URL's password. An existing role keeps its password (it
    may have been rotated, or be managed by the platform); with ``create=False`` it is not touched at all."""
    url = make_url(database_url)
    role, password = url.username or "", url.password
    exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not create:
        if not exists:
            raise RoleMissing(f"role {role} does not exist (it should be one of the cluster's managed roles)")
        return
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"
    if exists:
        await admin.execute(f"ALTER ROLE {_ident(role)} {attributes}")
        return
    password_sql = f" PASSWORD {_literal(password)}" if password else ""
    await admin.execute(f"CREATE ROLE {_ident(role)} {attributes}{password_sql}")


async def bootstrap(admin_url: str, services: list[ServiceDatabase], create_roles: bool = True) -> None:
    """Create the database, each service's migrator and runtime roles and its schema; idempotent.

    With ``create_roles=False`` the roles must exist already (made by CloudNativePG's managed roles, which
    own their passwords and attributes): they are checked, never created or altered. A schema set up
    before the migrator existed (owned by the runtime role) is handed to the migrator."""
    admin = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        for svc in services:
            url = make_url(svc.database_url)
            database = url.database or "mitwirkung"
            if make_url(svc.owner_url).username == url.username:
                raise ValueError(f"{svc.service}: the migrator and the runtime role must differ")
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                await admin.execute(f"CREATE DATABASE {_ident(database)}")
            await _ensure_role(admin, svc.database_url, create_roles)
            await _ensure_role(admin, svc.owner_url, create_roles)
    finally:
        await admin.close()

    for svc in services:
        url = make_url(svc.database_url)
        target = make_url(admin_url).set(database=url.database)
        conn = await asyncpg.connect(asyncpg_dsn(target.render_as_string(hide_password=False)))
        try:
            # Session lock, released when the connection closes: concurrent runs take turns.
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            role, schema = _ident(url.username or svc.service), _ident(svc.schema)
            owner = _ident(make_url(svc.owner_url).username or "")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner}")
            await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {owner}")
            # Tables of an earlier layout, owned by the runtime role, go to the migrator.
            await conn.execute(f"REASSIGN OWNED BY {role} TO {owner}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
            await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
            await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}, {owner}")
            await conn.execute(f"ALTER ROLE {role} SET search_path = {schema}")
            await conn.execute(f"ALTER ROLE {owner} SET search_path = {schema}")
        finally:
            await conn.close()


async def grant_runtime_privileges(svc: ServiceDatabase) -> None:
    """What the runtime role may do on its service's tables, applied after every migration (as owner)."""
    role, schema = _ident(make_url(svc.database_url).username or ""), _ident(svc.schema)
    conn = await asyncpg.connect(asyncpg_dsn(svc.owner_url))
    try:
        async with conn.transaction():
            await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
            await conn.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
            )
            await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", svc.schema)
            for (table,) in tables:
                if table == "alembic_version":
                    await conn.execute(
                        f"REVOKE INSERT, UPDATE, DELETE ON {schema}.{_ident(table)} FROM {role}"
                    )
                elif table in APPEND_ONLY_TABLES:
                    await conn.execute(f"REVOKE UPDATE, DELETE ON {schema}.{_ident(table)} FROM {role}")
    finally:
        await conn.close()


def migrate_service(svc: ServiceDatabase, revision: str = "head") -> None:
    """Migrate one service as its migrator, then grant its runtime role what it needs: under the
    database's migration lock, so a second run started meanwhile waits and then finds nothing to do."""
    with migration_lock(svc.owner_url):
        migrate(svc.service, svc.owner_url, revision)
        asyncio.run(grant_runtime_privileges(svc))


@contextmanager
def migration_lock(database_url: str, key: int = MIGRATION_LOCK_KEY) -> Iterator[None]:
    """Hold ``pg_advisory_lock(key)`` in ``database_url``'s database for the ``with`` block.

    Alembic runs event loops of its own, so the lock lives on a connection in a thread with its own loop;
    should that connection die, Postgres releases the lock (and the migration's own transaction fails)."""
    acquired, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(database_url))
        except BaseException as exc:
            failure.append(exc)
            acquired.set()
            return
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            acquired.set()
            await asyncio.to_thread(release.wait)
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
        except BaseException as exc:
            failure.append(exc)
            acquired.set()
        finally:
            await conn.close()

    holder = threading.Thread(target=lambda: asyncio.run(hold()), name="migration-lock", daemon=True)
    holder.start()
    acquired.wait()
    if failure:
        holder.join()
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        holder.join()


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
