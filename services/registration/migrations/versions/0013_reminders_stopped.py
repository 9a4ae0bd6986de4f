"""registrations.reminders_stopped_at: the person asked for no more reminders (the one-click unsubscribe of
RFC 8058 in a reminder's List-Unsubscribe header). Confirmations, calendar updates and other mails about the
registration still go: they are not reminders.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "registrations", sa.Column("reminders_stopped_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("registrations", "reminders_stopped_at")
