"""Tables of the proposals schema."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID

from shared.audit import audit_log_table
from shared.db import service_metadata
from shared.idempotency import idempotency_table
from shared.inbox import inbox_table
from shared.outbox import outbox_table

SCHEMA = "proposals"
metadata = service_metadata(SCHEMA)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
idempotency_keys = idempotency_table(metadata)

districts = Table(
    "districts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("number", Text, nullable=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=True),
    Column("position", Integer, nullable=False, server_default=text("0")),
    # A retired district keeps its proposals and is hidden from new ones.
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The read model of the registration service's catalog, fed by working_group.* events.
working_groups = Table(
    "working_groups",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("meetings", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # The registration service's catalog_version: the highest one seen wins (events may come out of order).
    Column("catalog_version", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The text search configuration of a proposal: German stemming for German texts, none for the others.
SEARCH_VECTOR = (
    "to_tsvector(CASE WHEN language = 'de' THEN 'german'::regconfig ELSE 'simple'::regconfig END, "
    "title || ' ' || body)"
)

proposals = Table(
    "proposals",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("working_group_id", Text, ForeignKey("working_groups.id"), nullable=False),
    Column("district_id", Text, ForeignKey("districts.id"), nullable=True),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("language", Text, nullable=False),
    # The author's contact data: optional (anonymous proposals are allowed), removed on erasure and after
    # the retention period. Never public, never in the history.
    Column("author_name", Text, nullable=True),
    Column("author_email", Text, nullable=True),
    # The mailbox the address delivers to (shared.addresses.mailbox): what the receipt budget counts, so
    # that victim+1@… and victim+2@… share one (0003). Removed with the address; never sent to.
    Column("author_mailbox", Text, nullable=True),
    Column("token_hash", Text, nullable=True, unique=True),
    Column("status", Text, nullable=False),
    # Raised by every change: moderators send it back in If-Match, so nobody overwrites another's decision.
    Column("version", Integer, nullable=False, server_default=text("1")),
    # Raised when the author sends an edited text after changes were requested.
    Column("revision", Integer, nullable=False, server_default=text("1")),
    # The moderation's public statement on the last decision (shown with the proposal, mailed to the author).
    Column("public_statement", Text, nullable=True),
    Column("duplicate_of", UUID(as_uuid=True), ForeignKey("proposals.id"), nullable=True),
    Column("merged_duplicates", Integer, nullable=False, server_default=text("0")),
    Column("outcome", Text, nullable=True),
    Column("outcome_statement", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When it (last) entered the moderation queue: the queue is served oldest first by this.
    Column("submitted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("outcome_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("search", TSVECTOR, Computed(SEARCH_VECTOR, persisted=True), nullable=False),
    Index("ix_proposals_queue", "status", "submitted_at", "id"),
    Index(
        "ix_proposals_public",
        text("published_at DESC"),
        text("id DESC"),
        postgresql_where=text("status = 'published'"),
    ),
    Index(
        "ix_proposals_public_by_group",
        "working_group_id",
        text("published_at DESC"),
        text("id DESC"),
        postgresql_where=text("status = 'published'"),
    ),
    Index(
        "ix_proposals_public_by_district",
        "district_id",
        text("published_at DESC"),
        text("id DESC"),
        postgresql_where=text("status = 'published'"),
    ),
    Index("ix_proposals_search", "search", postgresql_using="gin"),
    Index(
        "ix_proposals_author_mailbox",
        "author_mailbox",
        "created_at",
        postgresql_where=text("author_mailbox IS NOT NULL"),
    ),
    Index(
        "ix_proposals_author_email",
        text("lower(author_email)"),
        postgresql_where=text("author_email IS NOT NULL"),
    ),
)

# Append-only: every change of a proposal and every staff action on it, with the acting subject.
# The database refuses UPDATE, DELETE and TRUNCATE (triggers, and no such rights for the runtime role).
proposal_history = Table(
    "proposal_history",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("proposal_id", UUID(as_uuid=True), ForeignKey("proposals.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # 'author', 'moderator' (the token's subject in ``subject``) or 'system'.
    Column("actor", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("action", Text, nullable=False),
    Column("from_status", Text, nullable=True),
    Column("to_status", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("public_statement", Text, nullable=True),
    # Never public, never mailed: for the moderators only.
    Column("internal_note", Text, nullable=True),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("ix_proposal_history_proposal", "proposal_id", "id"),
)

# Append-only record of staff actions outside a single proposal (districts, reports).
audit_log = audit_log_table(metadata)

APPEND_ONLY_TABLES = ("proposal_history", "audit_log")
