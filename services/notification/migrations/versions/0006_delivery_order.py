"""deliveries keep the order they were recorded in, also within one transaction

The mails of a consumer's batch are recorded by one INSERT, in one transaction: they share ``now()``, so
ordering the due rows by ``next_attempt_at`` alone left a receipt and the decision on it (recorded in the
same batch) in any order. ``seq`` numbers the rows as they are inserted; the claim orders by both.

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

DUE = sa.text("status IN ('pending', 'retrying', 'unknown')")


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False))
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index("ix_deliveries_due", "deliveries", ["next_attempt_at", "seq"], postgresql_where=DUE)


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index("ix_deliveries_due", "deliveries", ["next_attempt_at"], postgresql_where=DUE)
    op.drop_column("deliveries", "seq")
