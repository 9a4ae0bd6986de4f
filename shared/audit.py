"""The append-only audit log every service keeps of staff actions and staff reads of personal data.

The table is protected in the database: the runtime role may only INSERT and SELECT (see
``shared.migrations``), and triggers refuse UPDATE, DELETE and TRUNCATE even to the table's owner
(``append_only_triggers`` in each service's migration). Details never carry personal data: a read of
the delivery log records *that* a recipient was searched for, not whom.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, MetaData, Table, Text, func, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection


def audit_log_table(metadata: MetaData) -> Table:
    return Table(
        "audit_log",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("subject", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target", Text, nullable=False),
        Column("details", JSONB, nullable=False),
    )


def append_only_sql(schema: str) -> list[str]:
    """Statements for a migration: the triggers that make ``<schema>.audit_log`` append-only."""
    return [
        f"""
        CREATE FUNCTION {schema}.audit_log_append_only() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only';
        END;
        $$ LANGUAGE plpgsql
        """,
        f"""
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {schema}.audit_log
        FOR EACH ROW EXECUTE FUNCTION {schema}.audit_log_append_only()
        """,
        f"""
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {schema}.audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_log_append_only()
        """,
    ]


async def record(
    session: AsyncConnection, table: Table, subject: str, action: str, target: str, details: dict[str, Any]
) -> None:
    """Append one entry, in the caller's unit of work (the action and its record commit together)."""
    await session.execute(
        insert(table).values(
            subject=subject,
            action=action,
            target=target,
            details=json.loads(json.dumps(details, default=str)),
        )
    )
