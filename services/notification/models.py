"""Tables of the notification schema: the delivery log is also the queue of mails to send."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.audit import audit_log_table
from shared.db import service_metadata
from shared.inbox import inbox_table
from shared.outbox import outbox_table

SCHEMA = "notification"
metadata = service_metadata(SCHEMA)
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    # event id + template + recipient: one intended mail, however often its event is delivered.
    Column("dedup_key", Text, nullable=False, unique=True),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("template", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("recipient_email", Text, nullable=True),
    Column("recipient_name", Text, nullable=True),
    Column("message_id", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("context", JSONB, nullable=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    # The order rows were recorded in, also within one transaction (where they share now()).
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Index(
        "ix_deliveries_due",
        "next_attempt_at",
        "seq",
        postgresql_where=text("status IN ('pending', 'retrying', 'unknown')"),
    ),
    Index("ix_deliveries_sending", "lease_until", postgresql_where=text("status = 'sending'")),
    Index("ix_deliveries_event", "event_id"),
    Index("ix_deliveries_created", "created_at"),
)

# Addresses are matched as normalised (``shared.addresses``): the staff's lookup and erasure.
Index("ix_deliveries_recipient", func.lower(func.btrim(deliveries.c.recipient_email)))

# Append-only record of staff reads of the delivery log (who searched, when, with which filters).
audit_log = audit_log_table(metadata)

# The SMTP rate limit's budget, shared by every replica: one row per send that began within the window
# (or is still in flight). Times are the database's clock.
send_budget = Table(
    "send_budget",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")),
    # When the relay answered; the slot frees one window later.
    Column("ended_at", DateTime(timezone=True), nullable=True),
    # A slot whose process died in flight frees at this time.
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Erasure wins over events in flight: the keyed hash of every address erased within the last
# ``erased_address_hours`` (never the address), and the time the erasure was asked for. An event for such an
# address, older than the erasure, records no mail.
erased_addresses = Table(
    "erased_addresses",
    metadata,
    Column("address_hash", Text, primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_erased_addresses_recorded", "recorded_at"),
)

# The suppression list: an address whose mail bounced for good gets no further mail. Kept as the keyed hash
# (HMAC-SHA256 under NOTIFICATION_ADDRESS_HASH_SECRET, ``domain.address_hash``), never the address: the list
# answers "is this address suppressed?" for an address one already has, and names nobody.
suppressions = Table(
    "suppressions",
    metadata,
    Column("address_hash", Text, primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The status code and the diagnostic, without any address ("5.1.1 user unknown").
    Column("reason", Text, nullable=False),
    # "bounce" (a bounce mail) or "rcpt" (the relay refused the recipient at once).
    Column("source", Text, nullable=False),
    Column("delivery_id", UUID(as_uuid=True), nullable=True),
)

# Every bounce mail received (by the SMTP listener or from the IMAP mailbox) and what became of it. The raw
# mail is kept only when it could not be read ("unparseable"), for staff to look at; purged with the
# delivery log.
bounce_mails = Table(
    "bounce_mails",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("source", Text, nullable=False),
    # permanent | temporary | unparseable | unknown_delivery | not_ours
    Column("outcome", Text, nullable=False),
    Column("delivery_id", UUID(as_uuid=True), nullable=True),
    Column("status", Text, nullable=True),
    Column("diagnostic", Text, nullable=True),
    Column("raw", LargeBinary, nullable=True),
    Index("ix_bounce_mails_received", "received_at"),
)
