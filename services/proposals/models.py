"""Tables of the proposals schema."""

import unicodedata

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Date,
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

# Search as residents type (0004): the same words with their accents folded away (é → e, ü → u and ue,
# ß → ss, ё → е, Arabic vowel marks dropped), with plain words in every language, beside the stemmed
# vector above. Only immutable functions (lower, translate, replace), so it is a stored generated column.
_ACCENTED = "àáâãäåāăąçćčďèéêëēėęěğìíîïīįıľłñńňòóôõöøōőŕřśşšșťţțùúûüūůűųýÿźżžё"
_BASE = {"ı": "i", "ł": "l", "ø": "o"}
# Combining marks (U+0300–U+036F), Arabic vowel marks and the tatweel: dropped (translate() deletes the
# characters of its second argument that have no counterpart in the third).
_DROPPED = "".join(chr(c) for c in (*range(0x0300, 0x0370), *range(0x064B, 0x0653), 0x0640))
FOLD_FROM = _ACCENTED + _DROPPED
FOLD_TO = "".join(_BASE.get(c) or unicodedata.normalize("NFKD", c)[0] for c in _ACCENTED)


def folded(column_sql: str) -> str:
    """SQL for ``column_sql`` in lower case with its accents folded away (see FOLD_FROM)."""
    return f"replace(translate(lower({column_sql}), '{FOLD_FROM}', '{FOLD_TO}'), 'ß', 'ss')"


def folded_vector(column_sql: str) -> str:
    """Accent-free plain words, plus the German spelling of umlauts (ü → ue), so Muller and Mueller both
    find Müller."""
    lowered = f"lower({column_sql})"
    german = f"replace(replace(replace(replace({lowered}, 'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss')"
    return (
        f"to_tsvector('simple'::regconfig, {folded(column_sql)}) || "
        f"to_tsvector('simple'::regconfig, {german})"
    )


FOLDED_SEARCH_VECTOR = folded_vector("title || ' ' || body")

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
    Column("search_folded", TSVECTOR, Computed(FOLDED_SEARCH_VECTOR, persisted=True), nullable=False),
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
    Index("ix_proposals_search_folded", "search_folded", postgresql_using="gin"),
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

# --- measures (0004): what the council made of adopted proposals, and what became of it ---------------

MEASURE_SEARCH_VECTOR = "to_tsvector('simple'::regconfig, title || ' ' || description)"

measures = Table(
    "measures",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("working_group_id", Text, ForeignKey("working_groups.id"), nullable=False),
    Column("district_id", Text, ForeignKey("districts.id"), nullable=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    # 'proposed' until the first progress entry, then the latest entry's status.
    Column("status", Text, nullable=False, server_default=text("'proposed'")),
    # The council's decision, once (NULL until then).
    Column("decision", Text, nullable=True),
    Column("decided_on", Date, nullable=True),
    Column("reference", Text, nullable=True),
    Column("decision_statement", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("search", TSVECTOR, Computed(MEASURE_SEARCH_VECTOR, persisted=True), nullable=False),
    Column(
        "search_folded",
        TSVECTOR,
        Computed(folded_vector("title || ' ' || description"), persisted=True),
        nullable=False,
    ),
    Index("ix_measures_public", text("created_at DESC"), text("id DESC")),
    Index("ix_measures_by_group", "working_group_id", text("created_at DESC"), text("id DESC")),
    Index("ix_measures_search_folded", "search_folded", postgresql_using="gin"),
)

measure_proposals = Table(
    "measure_proposals",
    metadata,
    Column("measure_id", UUID(as_uuid=True), ForeignKey("measures.id"), primary_key=True),
    Column("proposal_id", UUID(as_uuid=True), ForeignKey("proposals.id"), primary_key=True),
    Index("ix_measure_proposals_proposal", "proposal_id"),
)

# The timeline: append-only (like the history, audited by its subject).
measure_progress = Table(
    "measure_progress",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("measure_id", UUID(as_uuid=True), ForeignKey("measures.id"), nullable=False),
    Column("status", Text, nullable=False),
    Column("on", Date, nullable=False),
    Column("public_statement", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_measure_progress_measure", "measure_id", "id"),
)

# People following a measure (double opt-in). Personal data: removed on unsubscribe and on erasure.
measure_followers = Table(
    "measure_followers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("measure_id", UUID(as_uuid=True), ForeignKey("measures.id"), nullable=False),
    Column("email", Text, nullable=False),
    Column("mailbox", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ux_measure_followers_mailbox", "measure_id", "mailbox", unique=True),
)

# Authors of linked proposals who stopped the mails about one measure (the unsubscribe link).
measure_author_optouts = Table(
    "measure_author_optouts",
    metadata,
    Column("measure_id", UUID(as_uuid=True), ForeignKey("measures.id"), primary_key=True),
    Column("proposal_id", UUID(as_uuid=True), ForeignKey("proposals.id"), primary_key=True),
)

# Attendance counts per meeting, from meeting.attendance_counted (the highest revision): open data only.
attendance_counts = Table(
    "attendance_counts",
    metadata,
    Column("working_group_id", Text, primary_key=True),
    Column("meeting_number", Integer, primary_key=True),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("registered", Integer, nullable=False),
    Column("present", Integer, nullable=False),
    Column("no_show", Integer, nullable=False),
    Column("walk_ins", Integer, nullable=False),
    Column("by_language", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("revision", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Append-only record of staff actions outside a single proposal (districts, reports).
audit_log = audit_log_table(metadata)

APPEND_ONLY_TABLES = ("proposal_history", "audit_log")
