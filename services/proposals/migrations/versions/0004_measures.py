"""measures (council decision, progress, followers), attendance counts for open data, accent-free search

A measure links adopted or partially adopted proposals; the council decides on it once, then progress
entries follow for years. Followers subscribe by double opt-in; their addresses go on unsubscribe and on
erasure. ``attendance_counts`` keeps the newest counts per meeting (no personal data). ``search_folded``
(proposals and measures): the words with their accents folded away, so ``Sprachcafe`` finds
``Sprachcafé`` and ``Muller`` or ``Mueller`` find ``Müller`` — from immutable functions only (``unaccent``
is not immutable and needs an extension the migrator may not create), frozen here as at this revision.

Revision ID: 0004
Revises: 0003
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "proposals"
_ACCENTED = "àáâãäåāăąçćčďèéêëēėęěğìíîïīįıľłñńňòóôõöøōőŕřśşšșťţțùúûüūůűųýÿźżžё"
_BASE = {"ı": "i", "ł": "l", "ø": "o"}
_DROPPED = "".join(chr(c) for c in (*range(0x0300, 0x0370), *range(0x064B, 0x0653), 0x0640))
FOLD_FROM = _ACCENTED + _DROPPED
FOLD_TO = "".join(_BASE.get(c) or unicodedata.normalize("NFKD", c)[0] for c in _ACCENTED)


def _folded_vector(column_sql: str) -> str:
    lowered = f"lower({column_sql})"
    folded = f"replace(translate({lowered}, '{FOLD_FROM}', '{FOLD_TO}'), 'ß', 'ss')"
    german = f"replace(replace(replace(replace({lowered}, 'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss')"
    return f"to_tsvector('simple'::regconfig, {folded}) || to_tsvector('simple'::regconfig, {german})"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column(
        "proposals",
        sa.Column(
            "search_folded",
            postgresql.TSVECTOR(),
            sa.Computed(_folded_vector("title || ' ' || body"), persisted=True),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_proposals_search_folded", "proposals", ["search_folded"], schema=SCHEMA, postgresql_using="gin"
    )
    op.create_table(
        "measures",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "working_group_id", sa.Text(), sa.ForeignKey(f"{SCHEMA}.working_groups.id"), nullable=False
        ),
        sa.Column("district_id", sa.Text(), sa.ForeignKey(f"{SCHEMA}.districts.id"), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'proposed'")),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("decision_statement", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple'::regconfig, title || ' ' || description)", persisted=True),
            nullable=False,
        ),
        sa.Column(
            "search_folded",
            postgresql.TSVECTOR(),
            sa.Computed(_folded_vector("title || ' ' || description"), persisted=True),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_measures_public", "measures", [sa.text("created_at DESC"), sa.text("id DESC")], schema=SCHEMA
    )
    op.create_index(
        "ix_measures_by_group",
        "measures",
        ["working_group_id", sa.text("created_at DESC"), sa.text("id DESC")],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_measures_search_folded", "measures", ["search_folded"], schema=SCHEMA, postgresql_using="gin"
    )
    op.create_table(
        "measure_proposals",
        sa.Column(
            "measure_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.measures.id"),
            primary_key=True,
        ),
        sa.Column(
            "proposal_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.proposals.id"),
            primary_key=True,
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_measure_proposals_proposal", "measure_proposals", ["proposal_id"], schema=SCHEMA)
    op.create_table(
        "measure_progress",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "measure_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.measures.id"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("on", sa.Date(), nullable=False),
        sa.Column("public_statement", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        schema=SCHEMA,
    )
    op.create_index("ix_measure_progress_measure", "measure_progress", ["measure_id", "id"], schema=SCHEMA)
    op.create_table(
        "measure_followers",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "measure_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.measures.id"),
            nullable=False,
        ),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        schema=SCHEMA,
    )
    op.create_index(
        "ux_measure_followers_mailbox",
        "measure_followers",
        ["measure_id", "mailbox"],
        unique=True,
        schema=SCHEMA,
    )
    op.create_table(
        "measure_author_optouts",
        sa.Column(
            "measure_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.measures.id"),
            primary_key=True,
        ),
        sa.Column(
            "proposal_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(f"{SCHEMA}.proposals.id"),
            primary_key=True,
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "attendance_counts",
        sa.Column("working_group_id", sa.Text(), primary_key=True),
        sa.Column("meeting_number", sa.Integer(), primary_key=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("registered", sa.Integer(), nullable=False),
        sa.Column("present", sa.Integer(), nullable=False),
        sa.Column("no_show", sa.Integer(), nullable=False),
        sa.Column("walk_ins", sa.Integer(), nullable=False),
        sa.Column("by_language", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in (
        "attendance_counts",
        "measure_author_optouts",
        "measure_followers",
        "measure_progress",
        "measure_proposals",
        "measures",
    ):
        op.drop_table(table, schema=SCHEMA)
    op.drop_index("ix_proposals_search_folded", "proposals", schema=SCHEMA)
    op.drop_column("proposals", "search_folded", schema=SCHEMA)
