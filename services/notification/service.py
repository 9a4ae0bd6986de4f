"""Use cases of the notification service: record the mails an event owes, read the delivery log,
preview a template, purge old rows, its part in erasure on request and the retention of recipients. Each runs inside the caller's unit of work and never commits;
sending itself is the dispatcher's (``dispatcher.py``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification import bounces, domain
from services.notification import repository as repo
from services.notification.config import NotificationSettings
from services.notification.mail import message_id_for
from services.notification.models import audit_log, outbox
from services.notification.rendering import RenderedMail, TemplateRenderer
from services.notification.samples import sample_context
from shared import audit
from shared import events as ev
from shared.addresses import normalised
from shared.events import IntegrationEvent
from shared.inbox import EventMeta
from shared.languages import LANGUAGES
from shared.observability import MAIL_BOUNCES, get_logger
from shared.outbox import add_event

log = get_logger(__name__)


async def record_mails(
    conn: AsyncConnection,
    event: IntegrationEvent,
    meta: EventMeta,
    message_id_domain: str,
    address_hash_secret: str,
) -> None:
    """Every mail the event owes goes into the delivery log, once (its ``dedup_key``): written with the
    mails of the other events of the consumer's batch, in one statement (``repository.stage_delivery``).
    A mail to an address erased after the event occurred is not recorded (the same statement)."""
    for intent in domain.intents_for(event):
        key = domain.dedup_key(meta.event_id, intent.template, intent.recipient.email)
        repo.stage_delivery(
            conn,
            {
                "id": uuid.uuid4(),
                "dedup_key": key,
                "event_id": meta.event_id,
                "event_type": meta.event_type,
                "template": intent.template,
                "language": intent.recipient.language,
                "recipient_email": intent.recipient.email,
                "recipient_name": intent.recipient.name,
                "message_id": message_id_for(key, message_id_domain),
                "context": intent.context,
                "recipient_hash": domain.address_hash(address_hash_secret, intent.recipient.email),
                "occurred_at": meta.occurred_at,
            },
        )


async def delivery_log(
    conn: AsyncConnection,
    reader: str,
    *,
    recipient: str | None,
    event_id: str | None,
    status: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await repo.list_deliveries(
        conn, recipient=recipient, event_id=event_id, status=status, limit=limit
    )
    # Reading the log is reading personal data: recorded, without the address searched for.
    await audit.record(
        conn,
        audit_log,
        reader,
        "deliveries.read",
        "deliveries",
        {"recipient_filter": bool(recipient), "event_id": event_id, "status": status, "rows": len(rows)},
    )
    return [{**row._mapping, "recipient": row.recipient_email} for row in rows]


def preview(renderer: TemplateRenderer, name: str, language: str, footer: dict[str, str]) -> RenderedMail:
    """A template rendered with sample data (no personal data)."""
    if language not in LANGUAGES:
        raise domain.InvalidRequest("unknown language", field="language")
    context = sample_context(name)
    if context is None:
        raise domain.NotFound(f"There is no template named {name!r}.")
    return renderer.render(name, language, context, footer)


async def purge_old_deliveries(conn: AsyncConnection, settings: NotificationSettings) -> None:
    cutoff = datetime.now(UTC) - timedelta(days=settings.purge_after_days)
    await repo.purge_created_before(conn, cutoff)
    await repo.purge_bounce_mails_before(conn, cutoff)


# --- erasure on request (Art. 17) and retention ------------------------------------------------------------
#
# On ``privacy.erasure_requested`` the delivery log's rows of the address go (in any letter case, exactly
# that address: recipient, deduplication key, a value of the context), and the requester's last mail is
# recorded *held*: it is released by ``privacy.erasure_finished`` once every service has answered, and its
# row loses the address as soon as it is sent (migration 0004). Both happen in the consumer's transaction,
# with its inbox row, and the answer ``privacy.erasure_completed`` goes out through the outbox.
#
# Erasure wins over events in flight: the address's keyed hash is remembered (``erased_addresses``) for
# ``erased_address_hours``, and an event for it that occurred before the erasure and arrives later (from the
# backlog, the retry queue or a replay of the dead-letter queue) records no mail. A row a sender had already
# claimed ('sending') is deleted too, but its mail may be on the wire already: the last mail is then not due
# before that claim's lease ends, so it is always the last one the address gets.


async def erase_address(
    conn: AsyncConnection,
    event: ev.PrivacyErasureRequested,
    message_id_domain: str,
    address_hash_secret: str,
    erased_at: datetime | None = None,
) -> None:
    address = normalised(event.email)
    erased, in_flight_until = await repo.delete_mentioning(conn, address)
    address_hash = domain.address_hash(address_hash_secret, address)
    # The suppression list's entry goes too (a keyed hash is still about the person), and kept bounce mails
    # that mention the address.
    erased += await repo.erase_bounce_records(conn, address, address_hash)
    await repo.remember_erased(conn, address_hash, erased_at or datetime.now(UTC))
    key = domain.final_mail_key(event.request_id)
    await repo.insert_delivery(
        conn,
        {
            "id": uuid.uuid4(),
            "dedup_key": key,
            "event_id": str(event.request_id),
            "event_type": ev.PrivacyErasureFinished.event_type,
            "template": domain.FINAL_MAIL_TEMPLATE,
            "language": event.language,
            "recipient_email": event.email,
            "recipient_name": "",
            "message_id": message_id_for(key, message_id_domain),
            "context": domain.final_mail_context(event.request_id, event.language),
            "status": "held",
        },
    )
    if in_flight_until is not None:
        await repo.not_due_before(conn, key, in_flight_until)
    await add_event(
        conn,
        outbox,
        ev.PrivacyErasureCompleted(
            request_id=event.request_id, service="notification", records_erased=erased
        ),
    )


async def release_final_mail(conn: AsyncConnection, event: ev.PrivacyErasureFinished) -> None:
    """Every service has answered: the held last mail may go."""
    await repo.release_held(conn, domain.final_mail_key(event.request_id))


async def forget_recipients(
    conn: AsyncConnection, settings: NotificationSettings, now: datetime | None = None
) -> int:
    """Retention: ``recipient_retention_days`` after a mail was recorded, its row keeps no recipient, no
    links and no copy of the event's personal data. Returns how many rows it changed."""
    now = now or datetime.now(UTC)
    return await repo.forget_recipients_before(
        conn, now - timedelta(days=settings.recipient_retention_days), now
    )


async def forget_bounce_mail_bytes(
    conn: AsyncConnection, settings: NotificationSettings, now: datetime | None = None
) -> int:
    """Retention: a bounce mail kept for staff (it may quote an address) loses its bytes
    ``recipient_retention_days`` after it came. Returns how many."""
    now = now or datetime.now(UTC)
    return await repo.forget_bounce_mails_before(
        conn, now - timedelta(days=settings.recipient_retention_days)
    )


async def forget_erased_addresses(
    conn: AsyncConnection, settings: NotificationSettings, now: datetime | None = None
) -> int:
    """Retention: the hash of an erased address goes ``erased_address_hours`` after the erasure (no event
    for it can still be waiting by then). Returns how many went."""
    now = now or datetime.now(UTC)
    return await repo.forget_erased_before(conn, now - timedelta(hours=settings.erased_address_hours))


# --- bounces and the suppression list ----------------------------------------------------------------------
#
# A bounce names its delivery by the signed return path it was sent to (``domain.delivery_of_bounce``), never
# by the addresses it reports: the address suppressed is the delivery's own recipient, so a forged or
# misdirected bounce cannot suppress anyone. A permanent failure marks the delivery ``bounced``, puts its
# address on the suppression list (keyed hash), suppresses the mails still due for it and publishes
# ``mail.bounced``, all in one transaction; the same bounce again changes nothing.


async def bounce_delivery(
    conn: AsyncConnection,
    delivery_id: uuid.UUID,
    status: str,
    diagnostic: str,
    address_hash_secret: str,
    *,
    synchronous: bool,
) -> bool:
    """A permanent failure of the delivery; False if it had bounced already (or is gone). When the address is
    gone (``domain.address_is_gone``): suppressed, and ``mail.bounced`` published; a 5.7.x refusal of the mail
    itself only marks the delivery."""
    what = "the relay refused the recipient" if synchronous else f"bounced ({status})"
    gone = domain.address_is_gone(status)
    if not gone:
        what += ", the mail refused, not the address (not suppressed)"
    bounced = await repo.mark_bounced(conn, delivery_id, f"{what}: {diagnostic}"[:2000])
    if bounced is None or not gone:
        return bounced is not None
    if bounced.recipient_email:
        address = normalised(bounced.recipient_email)
        reason = domain.without_addresses(f"{status} {diagnostic}")
        source = "rcpt" if synchronous else "bounce"
        await repo.suppress(
            conn, domain.address_hash(address_hash_secret, address), reason, source, delivery_id
        )
        await repo.suppress_due(conn, address)
    await add_event(
        conn,
        outbox,
        ev.MailBounced(
            delivery_id=delivery_id,
            registration_id=domain.registration_of(bounced.context),
            template=bounced.template,
            status=status,
            diagnostic=domain.without_addresses(diagnostic),
            synchronous=synchronous,
        ),
    )
    return True


async def receive_bounce_mail(
    conn: AsyncConnection,
    raw: bytes,
    *,
    source: str,
    bounce_address: str,
    address_hash_secret: str,
    envelope_recipients: list[str] | None = None,
) -> str:
    """Handle one bounce mail; returns its outcome (also recorded in ``bounce_mails``): "permanent",
    "rejected" (5.7.x: the mail was refused, not the address; not suppressed), "temporary", "unparseable"
    (the raw mail is kept for staff), "unknown_delivery" (a valid return path whose delivery is gone) or
    "not_ours" (no valid return path: unknown or forged)."""
    message = bounces.parse(raw)
    report = bounces.read_bounce(message)
    delivery_id = None
    for address in bounces.return_paths(message, envelope_recipients):
        delivery_id = domain.delivery_of_bounce(address, bounce_address, address_hash_secret)
        if delivery_id is not None:
            break
    outcome: str = report.kind
    if delivery_id is None:
        outcome = "not_ours" if report.kind != "unparseable" else "unparseable"
        log.warning("bounce mail for no delivery of ours (unknown or forged return path)", source=source)
    elif await repo.delivery(conn, delivery_id) is None:
        outcome = "unknown_delivery" if report.kind != "unparseable" else "unparseable"
        log.warning("bounce mail for a delivery no longer recorded", delivery_id=str(delivery_id))
    elif report.kind == "permanent":
        assert report.status is not None
        if not domain.address_is_gone(report.status):
            outcome = "rejected"
        await bounce_delivery(
            conn, delivery_id, report.status, report.diagnostic, address_hash_secret, synchronous=False
        )
    elif report.kind == "temporary":
        # The relay retries on its own: recorded on the delivery, nothing else.
        await repo.note_temporary_bounce(
            conn, delivery_id, f"temporary failure reported ({report.status}): {report.diagnostic}"[:2000]
        )
    if outcome == "unparseable":
        log.warning("bounce mail could not be read; kept for staff", source=source)
    await repo.record_bounce_mail(
        conn,
        {
            "source": source,
            "outcome": outcome,
            "delivery_id": delivery_id,
            "status": report.status,
            "diagnostic": domain.without_addresses(report.diagnostic) or None,
            "raw": domain.without_tokens(raw) if outcome == "unparseable" else None,
        },
    )
    MAIL_BOUNCES.labels(outcome).inc()
    return outcome


async def suppression_of(
    conn: AsyncConnection, reader: str, address: str, address_hash_secret: str
) -> dict[str, Any]:
    """Whether ``address`` is on the suppression list; the look-up is audited, without the address."""
    row = await repo.suppression(conn, domain.address_hash(address_hash_secret, address))
    await audit.record(
        conn, audit_log, reader, "suppressions.read", "suppressions", {"found": row is not None}
    )
    if row is None:
        return {"suppressed": False}
    return {"suppressed": True, "since": row.since, "reason": row.reason}


async def lift_suppression(conn: AsyncConnection, admin: str, address: str, address_hash_secret: str) -> bool:
    """An admin takes an address off the suppression list (the person corrected their mailbox): audited,
    without the address. Returns whether it was on the list."""
    lifted = await repo.unsuppress(conn, domain.address_hash(address_hash_secret, address))
    await audit.record(conn, audit_log, admin, "suppression.lifted", "suppressions", {"was_listed": lifted})
    return lifted


async def bounce_mails(
    conn: AsyncConnection, reader: str, outcome: str | None, limit: int
) -> list[dict[str, Any]]:
    """The bounce mails received, newest first (those that could not be read with their text, for staff to
    read): the read is audited."""
    rows = await repo.list_bounce_mails(conn, outcome, limit)
    await audit.record(
        conn, audit_log, reader, "bounce_mails.read", "bounce_mails", {"outcome": outcome, "rows": len(rows)}
    )
    return [
        {
            **{k: v for k, v in row._mapping.items() if k != "raw"},
            "text": bytes(row.raw).decode("utf-8", "replace") if row.raw is not None else None,
        }
        for row in rows
    ]
