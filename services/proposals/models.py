"""Tables of the proposals schema."""

from sqlalchemy import Boolean, Column, DateTime, Integer, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import service_metadata
from shared.inbox import inbox_table
from shared.outbox import outbox_table

SCHEMA = "proposals"
metadata = service_metadata(SCHEMA)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

districts = Table(
    "districts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("number", Text, nullable=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=True),
    Column("position", Integer, nullable=False, server_default=text("0")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
)

# The read model of the registration service's catalog, fed by working_group.* events.
working_groups = Table(
    "working_groups",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("meetings", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
