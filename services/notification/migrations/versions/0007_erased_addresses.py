"""erased_addresses: erasure wins over events in flight; sent rows keep no link carrying a token

Addresses are matched as normalised (lower case, no surrounding space): the recipient index follows.

An event for an address can still wait in the queue, the retry queue or the dead-letter queue when the
address is erased. The notification service remembers the keyed hash (HMAC-SHA256 under
NOTIFICATION_ADDRESS_HASH_SECRET) of each erased address for ``erased_address_hours`` (48 h: the longest an
event can wait before it is handled, including a replay of the dead-letter queue) and records no mail for
an event older than the erasure.

Rows already sent (or failed for good) lose every context value that carries a token, as the sender's mark
does from now on.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.links import without_links

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erased_addresses",
        sa.Column("address_hash", sa.Text(), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_erased_addresses_recorded", "erased_addresses", ["recorded_at"])
    # Addresses are matched as normalised (``shared.addresses``): the staff's lookup and erasure.
    op.drop_index("ix_deliveries_recipient", table_name="deliveries")
    op.create_index(
        "ix_deliveries_recipient", "deliveries", [sa.text("lower(btrim(recipient_email))")], unique=False
    )
    op.execute(
        f"UPDATE notification.deliveries SET context = {without_links('context')} "
        "WHERE status IN ('sent', 'failed') AND strpos(context::text, 'token=') > 0"
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_recipient", table_name="deliveries")
    op.create_index("ix_deliveries_recipient", "deliveries", ["recipient_email"], unique=False)
    op.drop_index("ix_erased_addresses_recorded", table_name="erased_addresses")
    op.drop_table("erased_addresses")
