"""Where the tests find Postgres and RabbitMQ: testcontainers when a Docker engine answers, otherwise
the local services (or TEST_DATABASE_URL / TEST_AMQP_URL). Every run gets its own database, its own
login roles and its own RabbitMQ vhost, and removes them afterwards. A service that cannot be reached is a
failure, never a skip."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import quote

import aio_pika
import asyncpg
from sqlalchemy.engine import make_url

from shared.migrations import ServiceDatabase, bootstrap, migrate_service, migrator_url_for

SERVICES = ("registration", "notification", "proposals", "console")
# This run's secrets: a service refuses to start without them, and none has a default in code.
RUN_SECRETS = {
    variable: secrets.token_urlsafe(32)
    for variable in (
        "STAFF_JWT_SECRET",
        "REGISTRATION_TOKEN_SECRET",
        "PROPOSALS_TOKEN_SECRET",
        "NOTIFICATION_ADDRESS_HASH_SECRET",
    )
}


def service_environment() -> dict[str, str]:
    """What a service process started by the tests or the benchmarks needs besides its database and
    broker: the test environment and this run's secrets."""
    return {"ENVIRONMENT": "test", **RUN_SECRETS}


@dataclass
class TestInfra:
    admin_url: str  # postgresql://… with rights to create databases and roles
    database: str
    role_prefix: str
    amqp_url: str  # includes the run's own vhost

    def database_url(self, service: str) -> str:
        admin = make_url(self.admin_url)
        role = f"{self.role_prefix}_{service}"
        return f"postgresql+asyncpg://{role}:{role}@{admin.host or '127.0.0.1'}:{admin.port or 5432}/{self.database}"

    def migrator_url(self, service: str) -> str:
        return migrator_url_for(self.database_url(service))


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")


async def _check_amqp(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    await connection.close()


async def _check_postgres(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    await conn.close()


def provision(stack: ExitStack) -> TestInfra:
    run_id = uuid.uuid4().hex[:10]
    admin_url = os.environ.get("TEST_DATABASE_URL", "")
    amqp_base = os.environ.get("TEST_AMQP_URL", "")
    use_docker = (not admin_url or not amqp_base) and docker_available()

    if not admin_url:
        if use_docker:
            from testcontainers.postgres import PostgresContainer

            pg = stack.enter_context(PostgresContainer("postgres:16-alpine", driver=None))
            admin_url = pg.get_connection_url()
        else:
            admin_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    admin_url = admin_url.replace("postgresql+asyncpg://", "postgresql://").replace(
        "postgresql+psycopg2://", "postgresql://"
    )

    vhost = f"mw_test_{run_id}"
    if amqp_base:
        amqp_url = amqp_base
    elif use_docker:
        from testcontainers.rabbitmq import RabbitMqContainer

        rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:3.13-management"))
        amqp_url = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
    else:
        _rabbitmqctl("add_vhost", vhost)
        stack.callback(lambda: _rabbitmqctl("delete_vhost", vhost))
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"

    try:
        asyncio.run(_check_postgres(admin_url))
    except Exception as exc:
        raise RuntimeError(f"PostgreSQL is not reachable at {admin_url}: {exc}") from exc
    try:
        asyncio.run(_check_amqp(amqp_url))
    except Exception as exc:
        raise RuntimeError(f"RabbitMQ is not reachable at {amqp_url}: {exc}") from exc

    infra = TestInfra(
        admin_url=admin_url, database=f"mw_test_{run_id}", role_prefix=f"mw_{run_id}", amqp_url=amqp_url
    )
    stack.callback(lambda: asyncio.run(_drop(infra)))
    services = [ServiceDatabase(s, infra.database_url(s)) for s in SERVICES]
    asyncio.run(bootstrap(admin_url, services))
    for svc in services:
        migrate_service(svc)
    return infra


async def _drop(infra: TestInfra) -> None:
    conn = await asyncpg.connect(infra.admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{infra.database}" WITH (FORCE)')
        for service in SERVICES:
            await conn.execute(f'DROP ROLE IF EXISTS "{infra.role_prefix}_{service}"')
            await conn.execute(f'DROP ROLE IF EXISTS "{infra.role_prefix}_{service}_migrator"')
    finally:
        await conn.close()
