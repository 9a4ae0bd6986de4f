"""Event handlers of the notification service: record each mail an event owes, once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification import service
from shared.events import CATALOG, IntegrationEvent
from shared.inbox import EventMeta, Handler
from shared.topology import NOTIFICATION_MAIL


def make_mail_handler(message_id_domain: str) -> Handler:
    async def record_mails(conn: AsyncConnection, event: IntegrationEvent, meta: EventMeta) -> None:
        await service.record_mails(conn, event, meta, message_id_domain)

    return record_mails


def mail_handlers(message_id_domain: str) -> dict[str, Handler]:
    handler = make_mail_handler(message_id_domain)
    return {event_type: handler for event_type in NOTIFICATION_MAIL.routing_keys if event_type in CATALOG}
