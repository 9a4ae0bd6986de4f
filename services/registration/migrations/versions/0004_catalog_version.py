"""working_groups.catalog_version: raised whenever a meeting changes

Events of confirmations and cancellations carry the meetings from a per-process cache; the version, read
under the working group's lock, tells whether that cache entry is current.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "working_groups",
        sa.Column("catalog_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="registration",
    )


def downgrade() -> None:
    op.drop_column("working_groups", "catalog_version", schema="registration")
