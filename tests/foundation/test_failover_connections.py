"""A database failover seen from a unit of work: the primary ends every session (a fast shutdown sends
each idle connection a FATAL message), and the connections sitting in the pool are dead or stuck. The
request that meets one is answered 503 (nothing stored, try again), never 500, and the connection is not
handed to the next request: the next unit of work gets a fresh connection and succeeds."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from shared.db import asyncpg_dsn, driver_connection, is_infrastructure_error
from shared.http import install_error_handlers
from shared.runtime import build_runtime


def test_a_connection_left_stuck_and_no_writable_host_are_infrastructure_errors():
    stuck = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert is_infrastructure_error(stuck)
    assert is_infrastructure_error(asyncpg.exceptions.TargetServerAttributeNotMatched("no host"))
    assert not is_infrastructure_error(asyncpg.InternalClientError("something else"))


async def test_a_pooled_connection_the_server_ended_is_not_reused(registration_settings, infra):
    settings = registration_settings.model_copy(update={"database_pool_size": 1})
    runtime = build_runtime(settings, outbox=None)
    try:
        async with runtime.transaction() as session:
            pid = await (await driver_connection(session)).fetchval("SELECT pg_backend_pid()")
        admin = await asyncpg.connect(asyncpg_dsn(infra.admin_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
        # The hand-written statement of the intake meets the connection the server ended.
        with pytest.raises(Exception) as failed:
            async with runtime.transaction() as session:
                await (await driver_connection(session)).fetchval("SELECT 1")
        assert is_infrastructure_error(failed.value)
        async with runtime.transaction() as session:
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar() != pid
            assert await (await driver_connection(session)).fetchval("SELECT 2") == 2
    finally:
        await runtime.engine.dispose()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"), 503),
        (asyncpg.exceptions.TargetServerAttributeNotMatched("no host takes writes"), 503),
        (asyncpg.InternalClientError("something else"), 500),
    ],
)
async def test_a_request_that_met_a_stuck_connection_is_answered_503(error, status):
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/things")
    async def things() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/v1/things")).status_code == status
