"""erasure_requests: requests for erasure (Art. 17), followed until every service has answered

The address is kept only while it is needed: until the link is confirmed (or expires) and until every
service has answered. Afterwards the row keeps a keyed hash of it (to limit repeated requests), never
the address.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_hash", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=True),
        sa.Column(
            "answers", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_requests")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_erasure_requests_token_hash")),
        sa.CheckConstraint(
            "status IN ('pending_verification', 'erasing', 'completed')", name="ck_erasure_requests_status"
        ),
        # Once complete, the address is gone: only its keyed hash stays.
        sa.CheckConstraint("status <> 'completed' OR email IS NULL", name="ck_erasure_requests_forgotten"),
        schema="registration",
    )
    op.create_index(
        "ix_erasure_requests_email_hash",
        "erasure_requests",
        ["email_hash", "created_at"],
        schema="registration",
    )
    op.create_index("ix_erasure_requests_created", "erasure_requests", ["created_at"], schema="registration")


def downgrade() -> None:
    op.drop_table("erasure_requests", schema="registration")
