"""`mitwirkung migrate` takes the database's migration lock: two runs started together take turns, both
succeed, and the version table holds the one head. `setup` never resets an existing role's password, and
with --roles-exist (CloudNativePG's managed roles) it makes no role at all."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from shared.cli import SERVICES as CLI_SERVICES
from shared.migrations import (
    MIGRATION_LOCK_KEY,
    RoleMissing,
    ServiceDatabase,
    alembic_config,
    bootstrap,
)

ROOT = Path(__file__).resolve().parents[2]


def _admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    return url.replace("postgresql+asyncpg://", "postgresql://")


@dataclass
class FreshDatabase:
    admin_url: str
    name: str
    prefix: str

    def url(self, service: str, password: str | None = None) -> str:
        admin = make_url(self.admin_url)
        role = f"{self.prefix}_{service}"
        return (
            f"postgresql+asyncpg://{role}:{password or role}@{admin.host or '127.0.0.1'}:"
            f"{admin.port or 5432}/{self.name}"
        )

    def in_database(self) -> str:
        return make_url(self.admin_url).set(database=self.name).render_as_string(hide_password=False)


async def _drop(db: FreshDatabase) -> None:
    conn = await asyncpg.connect(db.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        roles = await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", db.prefix + "%")
        for (role,) in roles:
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await conn.close()


@pytest.fixture
def fresh() -> Iterator[FreshDatabase]:
    run = uuid.uuid4().hex[:10]
    db = FreshDatabase(_admin_url(), f"mw_lock_{run}", f"mw_lock_{run}")
    yield db
    asyncio.run(_drop(db))


def _migrate(db: FreshDatabase) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REGISTRATION_DATABASE_URL": db.url("registration"),
        "REGISTRATION_MIGRATOR_DATABASE_URL": db.url("registration_migrator"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "migrate", "registration"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _waiting_for_lock(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        """SELECT count(*) FROM pg_locks
           WHERE locktype = 'advisory' AND NOT granted AND objid = $1
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        MIGRATION_LOCK_KEY,
    )


def test_two_concurrent_migrations_take_turns_and_both_succeed(fresh: FreshDatabase) -> None:
    svc = ServiceDatabase("registration", fresh.url("registration"), fresh.url("registration_migrator"))
    asyncio.run(bootstrap(fresh.admin_url, [svc]))  # roles and schema; nothing migrated yet
    head = ScriptDirectory.from_config(alembic_config("registration", svc.owner_url)).get_current_head()

    async def scenario() -> tuple[list[int], list[str], list[str]]:
        holder = await asyncpg.connect(fresh.in_database())
        try:
            # Hold the lock ourselves, so both runs are certainly under way together before either may go.
            await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            runs = [_migrate(fresh), _migrate(fresh)]
            deadline = time.monotonic() + 60
            while await _waiting_for_lock(holder) < 2:
                assert all(r.poll() is None for r in runs), [r.communicate()[0] for r in runs]
                assert time.monotonic() < deadline, "the migrations never waited for the lock"
                await asyncio.sleep(0.2)
            tables = await holder.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'registration'")
            assert tables == [], "a migration ran while another held the lock"
            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            outputs = [await asyncio.to_thread(r.communicate, None, 120) for r in runs]
            versions = await holder.fetch("SELECT version_num FROM registration.alembic_version")
            return [r.returncode for r in runs], [o[0] for o in outputs], [v[0] for v in versions]
        finally:
            await holder.close()

    codes, outputs, versions = asyncio.run(scenario())
    assert codes == [0, 0], outputs
    assert versions == [head]


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether Postgres' stored SCRAM-SHA-256 verifier is that of ``password`` (RFC 5802 StoredKey)."""
    method, params, keys = verifier.split("$")
    assert method == "SCRAM-SHA-256"
    iterations, salt = params.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def test_setup_keeps_an_existing_roles_password(fresh: FreshDatabase) -> None:
    # Trust authentication on a test machine accepts any password: check the stored verifier instead.
    async def verifier() -> str:
        conn = await asyncpg.connect(fresh.admin_url)
        try:
            return await conn.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1", f"{fresh.prefix}_registration"
            )
        finally:
            await conn.close()

    svc = ServiceDatabase("registration", fresh.url("registration"), fresh.url("registration_migrator"))
    asyncio.run(bootstrap(fresh.admin_url, [svc]))
    made = asyncio.run(verifier())
    assert _scram_matches(made, make_url(svc.database_url).password or "")  # set when the role was made

    rotated = ServiceDatabase(
        "registration",
        fresh.url("registration", password="another-password"),
        fresh.url("registration_migrator", password="another-password"),
    )
    asyncio.run(bootstrap(fresh.admin_url, [rotated]))
    kept = asyncio.run(verifier())
    assert kept == made
    assert not _scram_matches(kept, "another-password")


def test_setup_with_roles_made_elsewhere_creates_and_alters_none(fresh: FreshDatabase) -> None:
    svc = ServiceDatabase("registration", fresh.url("registration"), fresh.url("registration_migrator"))
    with pytest.raises(RoleMissing):
        asyncio.run(bootstrap(fresh.admin_url, [svc], create_roles=False))

    async def make_roles_like_the_platform() -> None:
        conn = await asyncpg.connect(fresh.admin_url)
        try:
            for role in ("registration", "registration_migrator"):
                await conn.execute(
                    f"CREATE ROLE \"{fresh.prefix}_{role}\" LOGIN PASSWORD 'platform' CONNECTION LIMIT 7"
                )
        finally:
            await conn.close()

    async def roles() -> list[tuple[str, int, str]]:
        conn = await asyncpg.connect(fresh.admin_url)
        try:
            rows = await conn.fetch(
                "SELECT rolname, rolconnlimit, rolpassword FROM pg_authid WHERE rolname LIKE $1 ORDER BY 1",
                fresh.prefix + "%",
            )
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    asyncio.run(make_roles_like_the_platform())
    before = asyncio.run(roles())
    asyncio.run(bootstrap(fresh.admin_url, [svc], create_roles=False))
    assert asyncio.run(roles()) == before

    async def schema_owner() -> str:
        conn = await asyncpg.connect(fresh.in_database())
        try:
            return await conn.fetchval(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'registration'"
            )
        finally:
            await conn.close()

    assert asyncio.run(schema_owner()) == f"{fresh.prefix}_registration_migrator"


# Every service with a schema of its own, the console included (shared/cli.py).
SERVICES = CLI_SERVICES


def test_the_migration_jobs_command_with_the_platforms_roles(fresh: FreshDatabase) -> None:
    """`mitwirkung setup --roles-exist`, as the Kubernetes Job runs it: refuses while a role is missing,
    then makes and migrates every schema without touching the roles."""
    env = {**os.environ, "ENVIRONMENT": "test", "MITWIRKUNG_ADMIN_DATABASE_URL": fresh.admin_url}
    for service in SERVICES:
        env[f"{service.upper()}_DATABASE_URL"] = fresh.url(service)
        env[f"{service.upper()}_MIGRATOR_DATABASE_URL"] = fresh.url(f"{service}_migrator")

    def setup() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.cli", "setup", "--roles-exist"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    missing = setup()
    assert missing.returncode != 0
    assert "RoleMissing" in missing.stderr and f"{fresh.prefix}_registration" in missing.stderr

    async def platform_roles() -> None:
        conn = await asyncpg.connect(fresh.admin_url)
        try:
            for service in SERVICES:
                for role in (service, f"{service}_migrator"):
                    await conn.execute(
                        f"CREATE ROLE \"{fresh.prefix}_{role}\" LOGIN PASSWORD 'from-the-platform'"
                    )
        finally:
            await conn.close()

    async def role_state() -> list[tuple]:
        conn = await asyncpg.connect(fresh.admin_url)
        try:
            rows = await conn.fetch(
                "SELECT rolname, rolpassword, rolconnlimit FROM pg_authid WHERE rolname LIKE $1 ORDER BY 1",
                fresh.prefix + "%",
            )
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    async def versions() -> list[str]:
        conn = await asyncpg.connect(fresh.in_database())
        try:
            return [
                await conn.fetchval(f"SELECT version_num FROM {schema}.alembic_version")
                for schema in SERVICES
            ]
        finally:
            await conn.close()

    asyncio.run(platform_roles())
    before = asyncio.run(role_state())
    done = setup()
    assert done.returncode == 0, done.stdout + done.stderr
    assert asyncio.run(role_state()) == before
    heads = [ScriptDirectory.from_config(alembic_config(s, "")).get_current_head() for s in SERVICES]
    assert asyncio.run(versions()) == heads
