"""registrations: when a public POST last caused a mail (one per address and working group per 24 h,
and the hourly cap on opt-in mails)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "registrations",
        sa.Column("public_mail_at", sa.DateTime(timezone=True), nullable=True),
        schema="registration",
    )
    op.create_index(
        "ix_registrations_public_mail_at", "registrations", ["public_mail_at"], schema="registration"
    )


def downgrade() -> None:
    op.drop_index("ix_registrations_public_mail_at", "registrations", schema="registration")
    op.drop_column("registrations", "public_mail_at", schema="registration")
