"""Tables of the console schema: the staff's server-side sessions and the moderators' text blocks.
No business data: that stays with the three services, which the console reads through their APIs."""

from sqlalchemy import Column, DateTime, Index, Table, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.db import service_metadata

SCHEMA = "console"
metadata = service_metadata(SCHEMA)

# One row per browser: a sign-in under way (subject null: state, nonce and PKCE verifier in ``pending``)
# or a signed-in person. The cookie holds a random id; the table keeps only its SHA-256, so a copy of
# the table signs nobody in. Tokens stay here, never in the browser.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column("csrf_token", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("display_name", Text, nullable=True),
    Column("roles", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("language", Text, nullable=False, server_default=text("'de'")),
    Column("pending", JSONB, nullable=True),
    # The provider's tokens (access, refresh); empty for a development sign-in. The ID token is not kept.
    Column("access_token", Text, nullable=True),
    Column("refresh_token", Text, nullable=True),
    Column("access_expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_sessions_last_seen_at", "last_seen_at"),
)

# Reusable reasons for moderation decisions, per language (the author reads the reason in theirs).
text_blocks = Table(
    "text_blocks",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("language", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_text_blocks_language", "language", "title"),
)
