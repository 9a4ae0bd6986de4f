"""After the meetings: check-in codes, attendance, per-meeting counts that outlive it, and minutes.

* ``registrations.check_in_code``: 8 characters from Crockford's base-32 alphabet (no I, L, O, U), drawn
  from ``gen_random_uuid()``'s random bytes by the column default, so every way a registration is inserted
  gets one; unique per working group. Existing registrations get one here.
* ``attendance``: who came to which meeting. Personal data: it goes with the registration (erasure, and
  the retention after the last meeting). Walk-ins are never rows here, only counts.
* ``attendance_counts``: per meeting, what stays when the entries go (present, walk-ins, by language,
  and a ``revision`` raised by every check-in, carried by ``meeting.attendance_counted``).
* ``minutes``: every version of a meeting's minutes (corrections are new versions; all are kept).

Revision ID: 0015
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0015"
# The lead chains this after 0014 (issue 23's migration) when both branches are merged.
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Bytes 0-5 and 9-10 of a version-4 UUID are random in full (6 and 8 carry the version and variant bits);
# 256 is a multiple of 32, so each character is uniform.
_NEW_CODE = """
CREATE FUNCTION registration.new_check_in_code() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', get_byte(r.b, i.pos) % 32 + 1, 1), ''
                      ORDER BY i.ord)
    FROM (SELECT uuid_send(gen_random_uuid()) AS b) r,
         unnest(ARRAY[0, 1, 2, 3, 4, 5, 9, 10]) WITH ORDINALITY AS i(pos, ord)
$$
"""


def upgrade() -> None:
    op.execute(_NEW_CODE)
    op.add_column("registrations", sa.Column("check_in_code", sa.Text(), nullable=True))
    op.execute("UPDATE registration.registrations SET check_in_code = registration.new_check_in_code()")
    op.alter_column(
        "registrations",
        "check_in_code",
        nullable=False,
        server_default=sa.text("registration.new_check_in_code()"),
    )
    op.create_index(
        "uq_registrations_check_in_code", "registrations", ["working_group_id", "check_in_code"], unique=True
    )
    op.create_table(
        "attendance",
        sa.Column("registration_id", UUID(as_uuid=True), sa.ForeignKey("registrations.id"), primary_key=True),
        sa.Column("meeting_number", sa.Integer(), primary_key=True),
        sa.Column("working_group_id", sa.Text(), nullable=False),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_in_by", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["working_group_id", "meeting_number"], ["meetings.working_group_id", "meetings.number"]
        ),
    )
    op.create_index("ix_attendance_meeting", "attendance", ["working_group_id", "meeting_number"])
    op.create_table(
        "attendance_counts",
        sa.Column("working_group_id", sa.Text(), primary_key=True),
        sa.Column("meeting_number", sa.Integer(), primary_key=True),
        sa.Column("present", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("walk_ins", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("by_language", JSONB(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("walk_ins_by_type", JSONB(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(
            ["working_group_id", "meeting_number"], ["meetings.working_group_id", "meetings.number"]
        ),
    )
    op.create_table(
        "minutes",
        sa.Column("working_group_id", sa.Text(), primary_key=True),
        sa.Column("meeting_number", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("summary_md", sa.Text(), nullable=False),
        sa.Column("document_url", sa.Text(), nullable=True),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["working_group_id", "meeting_number"], ["meetings.working_group_id", "meetings.number"]
        ),
    )


def downgrade() -> None:
    op.drop_table("minutes")
    op.drop_table("attendance_counts")
    op.drop_table("attendance")
    op.drop_index("uq_registrations_check_in_code", "registrations")
    op.drop_column("registrations", "check_in_code")
    op.execute("DROP FUNCTION registration.new_check_in_code()")
