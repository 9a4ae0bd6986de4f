"""Event handlers of the notification service: record each mail an event owes, once."""

from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.intents import intents_for
from services.notification.mail import message_id_for
from services.notification.models import deliveries
from shared.events import CATALOG, IntegrationEvent
from shared.inbox import EventMeta, Handler
from shared.topology import NOTIFICATION_MAIL


def dedup_key(event_id: str, template: str, email: str) -> str:
    return f"{event_id}:{template}:{email.strip().lower()}"


def make_mail_handler(message_id_domain: str) -> Handler:
    async def record_mails(session: AsyncConnection, event: IntegrationEvent, meta: EventMeta) -> None:
        for intent in intents_for(event):
            key = dedup_key(meta.event_id, intent.template, intent.recipient.email)
            await session.execute(
                insert(deliveries)
                .values(
                    id=uuid.uuid4(),
                    dedup_key=key,
                    event_id=meta.event_id,
                    event_type=meta.event_type,
                    template=intent.template,
                    language=intent.recipient.language,
                    recipient_email=intent.recipient.email,
                    recipient_name=intent.recipient.name,
                    message_id=message_id_for(key, message_id_domain),
                    context=intent.context,
                )
                .on_conflict_do_nothing(index_elements=["dedup_key"])
            )

    return record_mails


def mail_handlers(message_id_domain: str) -> dict[str, Handler]:
    handler = make_mail_handler(message_id_domain)
    return {event_type: handler for event_type in NOTIFICATION_MAIL.routing_keys if event_type in CATALOG}
