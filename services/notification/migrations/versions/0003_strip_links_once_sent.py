"""deliveries: self-service links leave the context as soon as the mail is sent (or has failed for good)

Whoever reads the delivery log (staff, a backup) must not find working confirm, cancel or edit links in
it. The row is never rendered again once it is 'sent' or 'failed', so the links are no longer needed.
A trigger does it so that every path that marks a row (today the dispatcher's group commit) is covered.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notification.deliveries_strip_links() RETURNS trigger AS $$
        BEGIN
            IF NEW.context IS NOT NULL THEN
                NEW.context := NEW.context - ARRAY['links', 'edit_url'];
            END IF;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER deliveries_strip_links BEFORE UPDATE OF status ON notification.deliveries
        FOR EACH ROW WHEN (NEW.status IN ('sent', 'failed'))
        EXECUTE FUNCTION notification.deliveries_strip_links()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS deliveries_strip_links ON notification.deliveries")
    op.execute("DROP FUNCTION IF EXISTS notification.deliveries_strip_links()")
