"""Use cases of the notification service: record the mails an event owes, read the delivery log,
preview a template, purge old rows. Each runs inside the caller's unit of work and never commits;
sending itself is the dispatcher's (``dispatcher.py``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification import domain
from services.notification import repository as repo
from services.notification.config import NotificationSettings
from services.notification.mail import message_id_for
from services.notification.models import audit_log
from services.notification.rendering import RenderedMail, TemplateRenderer
from services.notification.samples import sample_context
from shared import audit
from shared.events import LANGUAGES, IntegrationEvent
from shared.inbox import EventMeta


async def record_mails(
    conn: AsyncConnection, event: IntegrationEvent, meta: EventMeta, message_id_domain: str
) -> None:
    """Every mail the event owes goes into the delivery log, once (its ``dedup_key``)."""
    for intent in domain.intents_for(event):
        key = domain.dedup_key(meta.event_id, intent.template, intent.recipient.email)
        await repo.insert_delivery(
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
    await repo.purge_created_before(conn, datetime.now(UTC) - timedelta(days=settings.purge_after_days))
