"""deliveries: the last mail of an erasure keeps no address once it is sent

An erasure's last mail is recorded 'held' when the notification service erases the address, and released
when every service has answered. As soon as it is sent (or has failed for good), its row loses the
recipient and any relay answer that might quote the address. A trigger, like the one for links (0003),
so that every path that marks a row is covered.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notification.deliveries_forget_erasure_recipient() RETURNS trigger AS $$
        BEGIN
            NEW.recipient_email := NULL;
            NEW.recipient_name := NULL;
            NEW.last_error := NULL;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER deliveries_forget_erasure_recipient BEFORE UPDATE OF status ON notification.deliveries
        FOR EACH ROW WHEN (NEW.template = 'privacy_erasure_finished' AND NEW.status IN ('sent', 'failed'))
        EXECUTE FUNCTION notification.deliveries_forget_erasure_recipient()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS deliveries_forget_erasure_recipient ON notification.deliveries")
    op.execute("DROP FUNCTION IF EXISTS notification.deliveries_forget_erasure_recipient()")
