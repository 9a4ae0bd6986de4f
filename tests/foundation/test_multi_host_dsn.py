"""A service pointed at a primary and its standby (one multi-host URL, ``target_session_attrs=read-write``):
SQLAlchemy's pool and the raw asyncpg connections (LISTEN/NOTIFY, setup) both try every host and settle on
the one that takes writes. SQLAlchemy spells the hosts as repeated ``host`` query values, which asyncpg
alone would cut down to the last one."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db import asyncpg_dsn, create_engine
from tests.support.smtp import free_port

MULTI = (
    "postgresql+asyncpg://u:p%40ss@/mitwirkung?host=10.0.0.1%3A5432&host=10.0.0.2%3A5433"
    "&target_session_attrs=read-write"
)


def test_the_hosts_of_a_multi_host_url_go_into_the_netloc_for_asyncpg():
    assert asyncpg_dsn(MULTI) == (
        "postgresql://u:p%40ss@10.0.0.1:5432,10.0.0.2:5433/mitwirkung?target_session_attrs=read-write"
    )


def test_a_single_host_url_is_only_given_the_plain_scheme():
    url = "postgresql+asyncpg://u:p@127.0.0.1:5432/mitwirkung?host=ignored"
    assert asyncpg_dsn(url) == "postgresql://u:p@127.0.0.1:5432/mitwirkung?host=ignored"
    assert asyncpg_dsn("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"


def _with_a_dead_host(database_url: str, dead_first: bool) -> str:
    """``database_url`` and a host that refuses connections, in one multi-host URL."""
    url = make_url(database_url)
    dead, live = f"127.0.0.1:{free_port()}", f"{url.host}:{url.port or 5432}"
    return url.set(
        host=None,
        port=None,
        query={"host": (dead, live) if dead_first else (live, dead), "target_session_attrs": "read-write"},
    ).render_as_string(hide_password=False)


@pytest.mark.parametrize("dead_first", [True, False], ids=["dead-host-first", "dead-host-last"])
async def test_asyncpg_and_the_engine_find_the_live_host_of_a_multi_host_url(infra, dead_first):
    url = _with_a_dead_host(infra.database_url("registration"), dead_first)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await conn.fetchval("SELECT NOT pg_is_in_recovery()")
    finally:
        await conn.close()
    engine = create_engine(url, "registration")
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
