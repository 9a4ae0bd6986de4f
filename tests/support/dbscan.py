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
