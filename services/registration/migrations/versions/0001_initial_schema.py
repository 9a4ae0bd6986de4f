"""initial schema

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
        schema="registration",
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_inbox")),
        schema="registration",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("event_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="registration",
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["seq"],
        unique=False,
        schema="registration",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "working_groups",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("expert_reserved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("confirmed_general", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("confirmed_reserved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("waitlist_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_working_groups")),
        schema="registration",
    )
    op.create_table(
        "meetings",
        sa.Column("working_group_id", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("venue", sa.Text(), server_default="", nullable=False),
        sa.Column("address", sa.Text(), server_default="", nullable=False),
        sa.Column("sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cancelled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("reminder_sent_for", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["working_group_id"],
            ["registration.working_groups.id"],
            name=op.f("fk_meetings_working_group_id_working_groups"),
        ),
        sa.PrimaryKeyConstraint("working_group_id", "number", name=op.f("pk_meetings")),
        schema="registration",
    )
    op.create_table(
        "registrations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("working_group_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_key", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("participant_type", sa.Text(), nullable=False),
        sa.Column("organization", sa.Text(), nullable=True),
        sa.Column("district", sa.Text(), nullable=True),
        sa.Column("accessibility_needs", sa.Text(), nullable=True),
        sa.Column("interpretation_language", sa.Text(), nullable=True),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("seat", sa.Text(), nullable=True),
        sa.Column("waitlist_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["working_group_id"],
            ["registration.working_groups.id"],
            name=op.f("fk_registrations_working_group_id_working_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_registrations_token_hash")),
        schema="registration",
    )
    op.create_index(
        "ix_registrations_pending_expiry",
        "registrations",
        ["expires_at"],
        unique=False,
        schema="registration",
        postgresql_where=sa.text("status = 'pending_confirmation'"),
    )
    op.create_index(
        "ix_registrations_waitlist",
        "registrations",
        ["working_group_id", "waitlist_seq"],
        unique=False,
        schema="registration",
        postgresql_where=sa.text("status = 'waitlisted'"),
    )
    op.create_index(
        "uq_registrations_active_email",
        "registrations",
        ["working_group_id", "email_key"],
        unique=True,
        schema="registration",
        postgresql_where=sa.text("status IN ('pending_confirmation', 'confirmed', 'waitlisted')"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_registrations_active_email",
        table_name="registrations",
        schema="registration",
        postgresql_where=sa.text("status IN ('pending_confirmation', 'confirmed', 'waitlisted')"),
    )
    op.drop_index(
        "ix_registrations_waitlist",
        table_name="registrations",
        schema="registration",
        postgresql_where=sa.text("status = 'waitlisted'"),
    )
    op.drop_index(
        "ix_registrations_pending_expiry",
        table_name="registrations",
        schema="registration",
        postgresql_where=sa.text("status = 'pending_confirmation'"),
    )
    op.drop_table("registrations", schema="registration")
    op.drop_table("meetings", schema="registration")
    op.drop_table("working_groups", schema="registration")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        schema="registration",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox", schema="registration")
    op.drop_table("inbox", schema="registration")
    op.drop_table("idempotency_keys", schema="registration")
