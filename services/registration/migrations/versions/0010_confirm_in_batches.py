"""confirm_registrations(): several confirmations of one working group decided under one lock, in one commit

Every confirmation of a working group queues behind its row lock, and each one holds it through its
commit and the hand-over to the next waiting backend; on a busy machine that hand-over, not the work, sets
the pace. So the service gathers the confirmations that arrive while one is being decided and decides
them together: this function calls ``confirm_registration()`` (0009, the one place of the rules)
for each, in the order given, inside one statement; the first call takes the working group's lock, the
others find it held by their own transaction.

Returns one row per confirmation decided, with its place (``ordinal``, from 1) in the arrays; a confirmation
that is no longer pending returns no row, as in 0009.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION registration.confirm_registrations(
            p_working_group_id text,
            p_registration_ids uuid[],
            p_nows timestamptz[],
            p_catalog_versions integer[],
            p_event_ids uuid[],
            p_confirmed_payloads jsonb[],
            p_confirmed_version integer,
            p_waitlisted_payloads jsonb[],
            p_waitlisted_version integer,
            p_correlation_ids text[]
        ) RETURNS TABLE (ordinal integer, outcome text, seat text, waitlist_position integer)
        LANGUAGE plpgsql AS $$
        BEGIN
            FOR i IN 1 .. coalesce(cardinality(p_registration_ids), 0) LOOP
                RETURN QUERY
                    SELECT i, c.outcome, c.seat, c.waitlist_position
                    FROM registration.confirm_registration(
                        p_registration_ids[i], p_working_group_id, p_catalog_versions[i], p_nows[i],
                        p_event_ids[i], p_confirmed_payloads[i], p_confirmed_version,
                        p_waitlisted_payloads[i], p_waitlisted_version, p_correlation_ids[i]
                    ) c;
            END LOOP;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION registration.confirm_registrations"
        "(text, uuid[], timestamptz[], integer[], uuid[], jsonb[], integer, jsonb[], integer, text[])"
    )
