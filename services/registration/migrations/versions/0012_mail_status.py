"""registrations.mail_status: "bounced" once the notification service reports (``mail.bounced``) that a mail
of the registration failed for good; "ok" otherwise. Staff see it on the participant list and can call or
write instead.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("registrations", sa.Column("mail_status", sa.Text(), nullable=False, server_default="ok"))
    op.add_column("registrations", sa.Column("mail_bounced_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("registrations", "mail_bounced_at")
    op.drop_column("registrations", "mail_status")
