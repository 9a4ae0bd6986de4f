"""proposals, their append-only history, the staff audit log, idempotency keys; catalog version

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "proposals"
SEARCH_VECTOR = (
    "to_tsvector(CASE WHEN language = 'de' THEN 'german'::regconfig ELSE 'simple'::regconfig END, "
    "title || ' ' || body)"
)
APPEND_ONLY = ("proposal_history", "audit_log")


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column(
        "districts",
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        schema=SCHEMA,
    )
    op.add_column(
        "working_groups",
        sa.Column("catalog_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "proposals",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("working_group_id", sa.Text(), nullable=False),
        sa.Column("district_id", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("author_name", sa.Text(), nullable=True),
        sa.Column("author_email", sa.Text(), nullable=True),
        sa.Column("token_hash", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("public_statement", sa.Text(), nullable=True),
        sa.Column("duplicate_of", sa.UUID(), nullable=True),
        sa.Column("merged_duplicates", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("outcome_statement", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column(
            "search", postgresql.TSVECTOR(), sa.Computed(SEARCH_VECTOR, persisted=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["working_group_id"],
            [f"{SCHEMA}.working_groups.id"],
            name=op.f("fk_proposals_working_group_id_working_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], [f"{SCHEMA}.districts.id"], name=op.f("fk_proposals_district_id_districts")
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], [f"{SCHEMA}.proposals.id"], name=op.f("fk_proposals_duplicate_of_proposals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposals")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_proposals_token_hash")),
        sa.CheckConstraint(
            "status IN ('submitted','published','rejected','changes_requested','duplicate','withdrawn')",
            name=op.f("ck_proposals_status"),
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR (status = 'published' AND outcome IN ('adopted','partially_adopted','not_adopted'))",
            name=op.f("ck_proposals_outcome"),
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_proposals_queue", "proposals", ["status", "submitted_at", "id"], schema=SCHEMA)
    for name, lead in (
        ("ix_proposals_public", []),
        ("ix_proposals_public_by_group", ["working_group_id"]),
        ("ix_proposals_public_by_district", ["district_id"]),
    ):
        op.create_index(
            name,
            "proposals",
            [*lead, sa.text("published_at DESC"), sa.text("id DESC")],
            schema=SCHEMA,
            postgresql_where=sa.text("status = 'published'"),
        )
    op.create_index("ix_proposals_search", "proposals", ["search"], schema=SCHEMA, postgresql_using="gin")
    op.create_index(
        "ix_proposals_author_email",
        "proposals",
        [sa.text("lower(author_email)")],
        schema=SCHEMA,
        postgresql_where=sa.text("author_email IS NOT NULL"),
    )

    op.create_table(
        "proposal_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("proposal_id", sa.UUID(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("public_statement", sa.Text(), nullable=True),
        sa.Column("internal_note", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            [f"{SCHEMA}.proposals.id"],
            name=op.f("fk_proposal_history_proposal_id_proposals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal_history")),
        schema=SCHEMA,
    )
    op.create_index("ix_proposal_history_proposal", "proposal_history", ["proposal_id", "id"], schema=SCHEMA)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        schema=SCHEMA,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
        schema=SCHEMA,
    )

    op.execute(
        f"""
        CREATE FUNCTION {SCHEMA}.refuse_change_of_append_only() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {SCHEMA}.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.refuse_change_of_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {SCHEMA}.{table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.refuse_change_of_append_only()"
        )
        # The runtime role keeps only INSERT and SELECT on these tables.
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {SCHEMA}.{table} FROM CURRENT_USER")


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {SCHEMA}.{table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {SCHEMA}.{table}")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.refuse_change_of_append_only()")
    op.drop_table("idempotency_keys", schema=SCHEMA)
    op.drop_table("audit_log", schema=SCHEMA)
    op.drop_table("proposal_history", schema=SCHEMA)
    op.drop_table("proposals", schema=SCHEMA)
    op.drop_column("working_groups", "catalog_version", schema=SCHEMA)
    op.drop_column("districts", "updated_at", schema=SCHEMA)
