"""Tables of the registration schema."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.audit import audit_log_table
from shared.db import service_metadata
from shared.idempotency import idempotency_table
from shared.inbox import inbox_table
from shared.outbox import outbox_table

SCHEMA = "registration"
metadata = service_metadata(SCHEMA)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

working_groups = Table(
    "working_groups",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("position", Integer, nullable=False, server_default=text("0")),
    Column("capacity", Integer, nullable=False),
    Column("expert_reserved", Integer, nullable=False, server_default=text("0")),
    # Seat counters, changed only under the working group's row lock (see repository.lock_working_group).
    Column("confirmed_general", Integer, nullable=False, server_default=text("0")),
    Column("confirmed_reserved", Integer, nullable=False, server_default=text("0")),
    Column("waitlist_seq", BigInteger, nullable=False, server_default=text("0")),
    # How many are waitlisted now; a newcomer's position is this number (migration 0003).
    Column("waitlisted", Integer, nullable=False, server_default=text("0")),
    # Raised on every meeting change: tells a cached copy of the meetings whether it is current (0004).
    Column("catalog_version", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

meetings = Table(
    "meetings",
    metadata,
    Column("working_group_id", Text, ForeignKey("working_groups.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("starts_at", DateTime(timezone=True), nullable=True),
    Column("ends_at", DateTime(timezone=True), nullable=True),
    Column("venue", Text, nullable=False, server_default=""),
    Column("address", Text, nullable=False, server_default=""),
    Column("sequence", Integer, nullable=False, server_default=text("0")),
    Column("cancelled", Boolean, nullable=False, server_default=text("false")),
    Column("reminder_sent_for", DateTime(timezone=True), nullable=True),
)

registrations = Table(
    "registrations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("working_group_id", Text, ForeignKey("working_groups.id"), nullable=False),
    Column("status", Text, nullable=False),
    # Personal data; set to NULL when the registration expires or is erased.
    Column("name", Text, nullable=True),
    Column("email", Text, nullable=True),
    Column("email_key", Text, nullable=True),
    # The mailbox the address delivers to (shared.addresses.mailbox): what the per-address opt-in budget
    # counts, so that victim+1@… and victim+2@… share one (0011). Never an address to send to.
    Column("mailbox_key", Text, nullable=True),
    Column("language", Text, nullable=False),
    Column("participant_type", Text, nullable=False),
    Column("organization", Text, nullable=True),
    Column("district", Text, nullable=True),
    Column("accessibility_needs", Text, nullable=True),
    Column("interpretation_language", Text, nullable=True),
    Column("token_hash", Text, nullable=False, unique=True),
    # The hash of the link mailed before cancelling (the token is rotated then): it answers "cancelled".
    Column("revoked_token_hash", Text, nullable=True, unique=True),
    Column("seat", Text, nullable=True),  # 'reserved' | 'general' while confirmed
    Column("waitlist_seq", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When a public POST last caused a mail to this address for this working group (0006).
    Column("public_mail_at", DateTime(timezone=True), nullable=True, index=True),
    # "bounced" once a mail of this registration failed for good (``mail.bounced``, 0011), else "ok".
    Column("mail_status", Text, nullable=False, server_default="ok"),
    Column("mail_bounced_at", DateTime(timezone=True), nullable=True),
    # The person stopped reminders (one-click unsubscribe, RFC 8058; 0012): no meeting reminder goes to them.
    Column("reminders_stopped_at", DateTime(timezone=True), nullable=True),
    # The short code shown at the door (mail, status page, QR), drawn by the database (0015); not personal.
    Column(
        "check_in_code",
        Text,
        nullable=False,
        server_default=text("registration.new_check_in_code()"),
    ),
    Index("uq_registrations_check_in_code", "working_group_id", "check_in_code", unique=True),
    Index(
        "ix_registrations_mailbox_mail",
        "mailbox_key",
        "public_mail_at",
        postgresql_where=text("mailbox_key IS NOT NULL"),
    ),
    Index(
        "uq_registrations_active_email",
        "working_group_id",
        "email_key",
        unique=True,
        postgresql_where=text("status IN ('pending_confirmation', 'confirmed', 'waitlisted')"),
    ),
    Index(
        "ix_registrations_waitlist",
        "working_group_id",
        "waitlist_seq",
        postgresql_where=text("status = 'waitlisted'"),
    ),
    Index(
        "ix_registrations_pending_expiry",
        "expires_at",
        postgresql_where=text("status = 'pending_confirmation'"),
    ),
)

# What a registration holds about the person: deleted when it expires unconfirmed (and on erasure).
PERSONAL_DATA_COLUMNS = (
    "name",
    "email",
    "email_key",
    "mailbox_key",
    "organization",
    "district",
    "accessibility_needs",
    "interpretation_language",
)

idempotency_keys = idempotency_table(metadata)

# Append-only record of every staff action and every staff read of personal data (shared.audit).
audit_log = audit_log_table(metadata)

# Requests for erasure (Art. 17, migration 0008). The address stays only while the request needs it
# (until the link is confirmed or expires, and until every service has answered); then only its hash.
erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=True),
    Column("email_hash", Text, nullable=False),
    # The keyed hash of the address's mailbox (shared.addresses.mailbox): the per-mailbox budget of
    # erasure mails counts it (0011).
    Column("mailbox_hash", Text, nullable=True),
    Column("language", Text, nullable=False),
    Column("origin", Text, nullable=False),  # 'self' (the mailed link) | 'admin' (a request by letter)
    Column("status", Text, nullable=False),  # pending_verification | erasing | completed
    Column("token_hash", Text, nullable=True, unique=True),
    # Each service's answer: {"registration": 3, "notification": 5, ...} (records erased).
    Column("answers", JSONB, nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("verified_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Index("ix_erasure_requests_email_hash", "email_hash", "created_at"),
    Index(
        "ix_erasure_requests_mailbox_hash",
        "mailbox_hash",
        "created_at",
        postgresql_where=text("mailbox_hash IS NOT NULL"),
    ),
    Index("ix_erasure_requests_created", "created_at"),
)


# --- after the meetings (0015) ----------------------------------------------------------------------------

# Who came to which meeting: personal data, it goes with the registration's personal data.
attendance = Table(
    "attendance",
    metadata,
    Column("registration_id", UUID(as_uuid=True), ForeignKey("registrations.id"), primary_key=True),
    Column("meeting_number", Integer, primary_key=True),
    Column("working_group_id", Text, nullable=False),
    Column("checked_in_at", DateTime(timezone=True), nullable=False),
    Column("checked_in_by", Text, nullable=False),
    ForeignKeyConstraint(
        ["working_group_id", "meeting_number"], ["meetings.working_group_id", "meetings.number"]
    ),
    Index("ix_attendance_meeting", "working_group_id", "meeting_number"),
)

# Per meeting, the counts that remain when the entries go (walk-ins are only ever counted here).
attendance_counts = Table(
    "attendance_counts",
    metadata,
    Column("working_group_id", Text, primary_key=True),
    Column("meeting_number", Integer, primary_key=True),
    Column("present", Integer, nullable=False, server_default=text("0")),
    Column("walk_ins", Integer, nullable=False, server_default=text("0")),
    Column("by_language", JSONB, nullable=False, server_default=text("'{}'")),
    Column("walk_ins_by_type", JSONB, nullable=False, server_default=text("'{}'")),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ForeignKeyConstraint(
        ["working_group_id", "meeting_number"], ["meetings.working_group_id", "meetings.number"]
    ),
)

# Every version of a meeting's minutes; corrections are new versions.
minutes = Table(
    "minutes",
    metadata,
    Column("working_group_id", Text, primary_key=True),
    Column("meeting_number", Integer, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("summary_md", Text, nullable=False),
    Column("document_url", Text, nullable=True),
    Column("published", Boolean, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["working_group_id", "meeting_number"], ["meetings.working_group_id", "meetings.number"]
    ),
)
