"""Least privilege in the database: a migrator role owns each service's tables; the runtime role the
service logs in with owns nothing, may only append to and read the audit log, and sees no other schema."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from shared.migrations import ServiceDatabase, bootstrap, grant_runtime_privileges
from tests.support.infra import SERVICES

OTHER_TABLES = {
    "registration": "registration.registrations",
    "notification": "notification.deliveries",
    "proposals": "proposals.districts",
    "console": "console.sessions",
}


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(url))


@pytest.mark.parametrize("schema", ["registration", "notification"])
async def test_the_runtime_role_cannot_rewrite_truncate_or_unprotect_the_audit_log(infra, schema):
    conn = await _connect(infra.database_url(schema))
    try:
        await conn.execute(
            f"INSERT INTO {schema}.audit_log (subject, action, target, details) "
            "VALUES ('test', 'privilege.check', 'audit_log', '{}')"
        )
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.audit_log") >= 1
        for statement in (
            "UPDATE registration.audit_log SET subject = 'someone else'",
            "DELETE FROM registration.audit_log",
            "TRUNCATE registration.audit_log",
            "ALTER TABLE registration.audit_log DISABLE TRIGGER audit_log_append_only",
            "ALTER TABLE registration.audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_log_append_only ON registration.audit_log",
            "DROP TABLE registration.audit_log",
            "CREATE TABLE registration.sneaky (id int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement.replace("registration.", f"{schema}."))
    finally:
        await conn.close()


@pytest.mark.parametrize("schema", ["registration", "notification"])
async def test_even_the_owner_cannot_truncate_the_audit_log(infra, schema):
    conn = await _connect(infra.migrator_url(schema))
    try:
        await conn.execute(
            f"INSERT INTO {schema}.audit_log (subject, action, target, details) VALUES ('t', 'a', 't', '{{}}')"
        )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(f"TRUNCATE {schema}.audit_log")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(f"DELETE FROM {schema}.audit_log")
    finally:
        await conn.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_runtime_role_owns_nothing_and_reads_no_other_schema(infra, service):
    conn = await _connect(infra.database_url(service))
    try:
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        )
        assert owned == 0
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        )
        # Its own tables: read and write.
        assert await conn.fetchval(f"SELECT count(*) >= 0 FROM {OTHER_TABLES[service]}")
        for other, table in OTHER_TABLES.items():
            if other != service:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"TRUNCATE {OTHER_TABLES[service]}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"UPDATE {service}.alembic_version SET version_num = version_num")
    finally:
        await conn.close()


async def test_setup_is_idempotent_and_keeps_the_grants(infra):
    services = [ServiceDatabase(s, infra.database_url(s), infra.migrator_url(s)) for s in SERVICES]
    await bootstrap(infra.admin_url, services)
    for svc in services:
        await grant_runtime_privileges(svc)
    await test_the_runtime_role_cannot_rewrite_truncate_or_unprotect_the_audit_log(infra, "registration")
    conn = await _connect(infra.database_url("registration"))
    try:
        assert await conn.fetchval("SELECT count(*) >= 0 FROM registration.registrations")
    finally:
        await conn.close()
