"""proposals.author_mailbox: the receipt budget per address counts the mailbox

``victim+1@…`` and ``victim+2@…`` land in one inbox: the budget of receipt mails per address counts
``shared.addresses.mailbox`` (lower case, +tag removed, gmail dots removed), never the address as typed. It
is personal data like ``author_email`` and removed with it. For counting only: mail goes to the address as
typed.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.addresses import backfill_mailbox_keys

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "proposals"


def upgrade() -> None:
    op.add_column("proposals", sa.Column("author_mailbox", sa.Text(), nullable=True), schema=SCHEMA)
    backfill_mailbox_keys(op.get_bind(), f"{SCHEMA}.proposals", "author_email", "author_mailbox")
    op.create_index(
        "ix_proposals_author_mailbox",
        "proposals",
        ["author_mailbox", "created_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("author_mailbox IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_proposals_author_mailbox", "proposals", schema=SCHEMA)
    op.drop_column("proposals", "author_mailbox", schema=SCHEMA)
