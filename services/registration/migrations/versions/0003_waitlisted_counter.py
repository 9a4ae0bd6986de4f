"""working_groups.waitlisted: the waitlist's length, kept under the working group's lock

A new place on the waitlist is the last one, so a person's position is this counter: no count over the
waitlist while the working group's row is locked.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "working_groups",
        sa.Column("waitlisted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="registration",
    )
    op.execute(
        """
        UPDATE registration.working_groups wg
        SET waitlisted = (
            SELECT count(*) FROM registration.registrations r
            WHERE r.working_group_id = wg.id AND r.status = 'waitlisted'
        )
        """
    )


def downgrade() -> None:
    op.drop_column("working_groups", "waitlisted", schema="registration")
