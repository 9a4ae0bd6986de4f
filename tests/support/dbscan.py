"""Searching a whole database for a value: every text, varchar and JSON column of every table of every
schema (as the superuser of the run's database), e.g. to prove that an erased address is gone."""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from tests.support.infra import TestInfra

TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


def run_database_admin_dsn(infra: TestInfra) -> str:
    return make_url(infra.admin_url).set(database=infra.database).render_as_string(hide_password=False)


async def columns_containing(infra: TestInfra, *needles: str) -> list[str]:
    """``schema.table.column`` of every column where any row contains any of ``needles``, in any letter case."""
    conn = await asyncpg.connect(run_database_admin_dsn(infra))
    try:
        columns = await conn.fetch(
            """
            SELECT c.table_schema, c.table_name, c.column_name
            FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE t.table_type = 'BASE TABLE'
              AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
              AND c.data_type = ANY($1::text[])
            """,
            list(TEXT_TYPES),
        )
        assert len(columns) > 20, "the scan must see the tables of all three services"
        found = []
        for c in columns:
            ident = f'"{c["table_schema"]}"."{c["table_name"]}"'
            column = f'"{c["column_name"]}"::text'
            hit = await conn.fetchval(
                f"SELECT count(*) FROM {ident} WHERE {column} ILIKE ANY($1::text[])",
                [f"%{_like_escape(n)}%" for n in needles],
            )
            if hit:
                found.append(f"{c['table_schema']}.{c['table_name']}.{c['column_name']}")
        return found
    finally:
        await conn.close()


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
          AND table_schema NOT LIKE 'pg\\_%'
        ORDER BY 1, 2
        """
    )
    return [f'"{r["table_schema"]}"."{r["table_name"]}"' for r in rows]


async def rows_mentioning(infra: TestInfra, needle: str) -> dict[str, list[str]]:
    """Every row of every table of every schema whose text contains ``needle`` (any letter case), as
    sorted JSON texts per table: a snapshot to compare a person's rows before and after."""
    conn = await asyncpg.connect(run_database_admin_dsn(infra))
    try:
        found: dict[str, list[str]] = {}
        for table in await _tables(conn):
            rows = await conn.fetch(
                f"SELECT to_jsonb(t)::text AS row FROM {table} t WHERE t::text ILIKE $1",
                f"%{_like_escape(needle)}%",
            )
            if rows:
                found[table] = sorted(r["row"] for r in rows)
        return found
    finally:
        await conn.close()


def holds_exactly(text: str, address: str) -> bool:
    """``text`` holds ``address`` as a word of its own (any letter case), not as part of a longer address:
    ``a.s@example.org`` is not in ``maria.s@example.org``; ``a_b@…`` is not ``axb@…``."""
    import re

    pattern = r"(?<![\w.%+\-])" + re.escape(address) + r"(?![\w\-]|\.\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


async def tables_holding_exactly(infra: TestInfra, address: str) -> list[str]:
    """The tables of any schema with a row that holds ``address`` exactly (:func:`holds_exactly`)."""
    conn = await asyncpg.connect(run_database_admin_dsn(infra))
    try:
        found = []
        for table in await _tables(conn):
            rows = await conn.fetch(
                f"SELECT to_jsonb(t)::text AS row FROM {table} t WHERE t::text ILIKE $1",
                f"%{_like_escape(address)}%",
            )
            if any(holds_exactly(r["row"], address) for r in rows):
                found.append(table)
        return found
    finally:
        await conn.close()
