"""registrations: the hash of the link that was valid before cancelling (the token is rotated)

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "registrations", sa.Column("revoked_token_hash", sa.Text(), nullable=True), schema="registration"
    )
    op.create_unique_constraint(
        "uq_registrations_revoked_token_hash", "registrations", ["revoked_token_hash"], schema="registration"
    )


def downgrade() -> None:
    op.drop_constraint("uq_registrations_revoked_token_hash", "registrations", schema="registration")
    op.drop_column("registrations", "revoked_token_hash", schema="registration")
