"""confirm_registration(): the seat decision of a confirmation, inside the database

Every confirmation of a working group queues behind its row lock. Taken by a statement from the service
and held across the round trips that follow (the decision, the event, the commit, and the service's event
loop in between), the lock would be held for the length of all of them. This function takes the locks
(working group first, then the registration: the lock order everywhere), decides the seat by the rules
of ``domain.allocate`` / ``domain.confirm``, writes the registration, the counters and the event, and
returns; called as a statement of its own it commits at once, so the lock is held for microseconds. ``tests/registration/test_confirm_function.py`` checks the decision against the domain's
over every combination of counters.

Returns no row when the registration is no longer pending (a second click, the expiry job), and
``stale`` when the working group's meetings changed since the caller built the event (it builds it again).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION registration.confirm_registration(
            p_registration_id uuid,
            p_working_group_id text,
            p_catalog_version integer,
            p_now timestamptz,
            p_event_id uuid,
            p_confirmed_payload jsonb,
            p_confirmed_version integer,
            p_waitlisted_payload jsonb,
            p_waitlisted_version integer,
            p_correlation_id text
        ) RETURNS TABLE (outcome text, seat text, waitlist_position integer)
        LANGUAGE plpgsql AS $$
        DECLARE
            g registration.working_groups%ROWTYPE;
            r_status text;
            r_type text;
            reserved_seats integer;
            chosen text;
        BEGIN
            SELECT * INTO g FROM registration.working_groups w WHERE w.id = p_working_group_id FOR UPDATE;
            IF NOT FOUND THEN
                RETURN;
            END IF;
            SELECT r.status, r.participant_type INTO r_status, r_type
                FROM registration.registrations r WHERE r.id = p_registration_id FOR UPDATE;
            IF NOT FOUND OR r_status <> 'pending_confirmation' THEN
                RETURN;
            END IF;
            IF g.catalog_version <> p_catalog_version THEN
                RETURN QUERY SELECT 'stale'::text, NULL::text, NULL::integer;
                RETURN;
            END IF;
            -- domain.allocate: never more confirmed than seats; an expert takes a reserved seat first,
            -- then a general one; anybody else only a general one.
            reserved_seats := GREATEST(0, LEAST(g.expert_reserved, g.capacity));
            IF g.confirmed_general + g.confirmed_reserved >= g.capacity THEN
                chosen := NULL;
            ELSIF r_type = 'expert' AND g.confirmed_reserved < reserved_seats THEN
                chosen := 'reserved';
            ELSIF g.confirmed_general < g.capacity - reserved_seats THEN
                chosen := 'general';
            ELSE
                chosen := NULL;
            END IF;
            IF chosen IS NOT NULL THEN
                UPDATE registration.working_groups w
                    SET confirmed_reserved = w.confirmed_reserved + (chosen = 'reserved')::integer,
                        confirmed_general = w.confirmed_general + (chosen = 'general')::integer,
                        updated_at = p_now
                    WHERE w.id = g.id;
                UPDATE registration.registrations r
                    SET status = 'confirmed', seat = chosen, waitlist_seq = NULL,
                        confirmed_at = clock_timestamp(), expires_at = NULL, updated_at = p_now
                    WHERE r.id = p_registration_id;
                INSERT INTO registration.outbox (id, event_type, event_version, payload, correlation_id)
                    VALUES (p_event_id, 'registration.confirmed', p_confirmed_version,
                            p_confirmed_payload, p_correlation_id);
                RETURN QUERY SELECT 'confirmed'::text, chosen, NULL::integer;
            ELSE
                -- domain.confirm: the new place is the last one; its position is the waitlist's length.
                UPDATE registration.working_groups w
                    SET waitlist_seq = w.waitlist_seq + 1, waitlisted = w.waitlisted + 1, updated_at = p_now
                    WHERE w.id = g.id;
                UPDATE registration.registrations r
                    SET status = 'waitlisted', seat = NULL, waitlist_seq = g.waitlist_seq + 1,
                        confirmed_at = clock_timestamp(), expires_at = NULL, updated_at = p_now
                    WHERE r.id = p_registration_id;
                INSERT INTO registration.outbox (id, event_type, event_version, payload, correlation_id)
                    VALUES (p_event_id, 'registration.waitlisted', p_waitlisted_version,
                            jsonb_set(p_waitlisted_payload, '{waitlist_position}', to_jsonb(g.waitlisted + 1)),
                            p_correlation_id);
                RETURN QUERY SELECT 'waitlisted'::text, NULL::text, g.waitlisted + 1;
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION registration.confirm_registration"
        "(uuid, text, integer, timestamptz, uuid, jsonb, integer, jsonb, integer, text)"
    )
