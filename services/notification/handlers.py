"""Event handlers of the notification service: record each mail an event owes, once; erase an address
on request and release the requester's last mail."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification import service
from shared import events as ev
from shared.events import CATALOG, IntegrationEvent
from shared.inbox import EventMeta, Handler
from shared.topology import NOTIFICATION_MAIL


def make_mail_handler(message_id_domain: str, address_hash_secret: str) -> Handler:
    async def record_mails(conn: AsyncConnection, event: IntegrationEvent, meta: EventMeta) -> None:
        await service.record_mails(conn, event, meta, message_id_domain, address_hash_secret)

    return record_mails


async def release_final_mail(conn: AsyncConnection, event: IntegrationEvent, meta: EventMeta) -> None:
    assert isinstance(event, ev.PrivacyErasureFinished)
    await service.release_final_mail(conn, event)


def mail_handlers(message_id_domain: str, address_hash_secret: str) -> dict[str, Handler]:
    handler = make_mail_handler(message_id_domain, address_hash_secret)
    handlers = {event_type: handler for event_type in NOTIFICATION_MAIL.routing_keys if event_type in CATALOG}
    # The last mail of an erasure was recorded (held) with the erasure; its event only releases it.
    handlers[ev.PrivacyErasureFinished.event_type] = release_final_mail
    return handlers


def erasure_handlers(message_id_domain: str, address_hash_secret: str) -> dict[str, Handler]:
    async def on_erasure_requested(conn: AsyncConnection, event: IntegrationEvent, meta: EventMeta) -> None:
        assert isinstance(event, ev.PrivacyErasureRequested)
        # The erasure's time is its event's: events that occurred before it are dropped on arrival.
        await service.erase_address(conn, event, message_id_domain, address_hash_secret, meta.occurred_at)

    return {ev.PrivacyErasureRequested.event_type: on_erasure_requested}
