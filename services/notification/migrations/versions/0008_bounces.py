"""bounces: the suppression list (keyed hashes) and the bounce mails received

A bounce of a permanent failure marks its delivery ``bounced`` and puts the address on the suppression list,
as its keyed hash (HMAC-SHA256 under NOTIFICATION_ADDRESS_HASH_SECRET): the list holds no address. Every
bounce mail received is recorded with its outcome; one that could not be read keeps its raw bytes for staff.
Deliveries have two new statuses, ``bounced`` and ``suppressed`` (text column, no constraint to change).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address_hash", sa.Text(), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("delivery_id", UUID(as_uuid=True), nullable=True),
    )
    op.create_table(
        "bounce_mails",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("delivery_id", UUID(as_uuid=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_bounce_mails_received", "bounce_mails", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_bounce_mails_received", table_name="bounce_mails")
    op.drop_table("bounce_mails")
    op.drop_table("suppressions")
