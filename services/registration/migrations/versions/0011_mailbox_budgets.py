"""registrations.mailbox_key and erasure_requests.mailbox_hash: per-address budgets count the mailbox

``victim+1@…`` and ``victim+2@…`` land in one inbox: the opt-in and erasure mail budgets per address count
``shared.addresses.mailbox`` (lower case, +tag removed, gmail dots removed), never the address as typed.
``mailbox_key`` is personal data like ``email`` (removed with it); ``mailbox_hash`` is keyed like
``email_hash``. For counting only: mail goes to the address as typed.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.addresses import backfill_mailbox_keys

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "registration"


def upgrade() -> None:
    op.add_column("registrations", sa.Column("mailbox_key", sa.Text(), nullable=True), schema=SCHEMA)
    backfill_mailbox_keys(op.get_bind(), f"{SCHEMA}.registrations", "email", "mailbox_key")
    op.create_index(
        "ix_registrations_mailbox_mail",
        "registrations",
        ["mailbox_key", "public_mail_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("mailbox_key IS NOT NULL"),
    )
    # Requests made before this revision have none; they count only by their exact address.
    op.add_column("erasure_requests", sa.Column("mailbox_hash", sa.Text(), nullable=True), schema=SCHEMA)
    op.create_index(
        "ix_erasure_requests_mailbox_hash",
        "erasure_requests",
        ["mailbox_hash", "created_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("mailbox_hash IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_erasure_requests_mailbox_hash", "erasure_requests", schema=SCHEMA)
    op.drop_column("erasure_requests", "mailbox_hash", schema=SCHEMA)
    op.drop_index("ix_registrations_mailbox_mail", "registrations", schema=SCHEMA)
    op.drop_column("registrations", "mailbox_key", schema=SCHEMA)
