"""The notification service's part in erasure on request (Art. 17), and its retention job.

On ``privacy.erasure_requested`` the delivery log's rows of the address go (in any letter case, wherever
it appears: recipient, deduplication key, context), and the requester's last mail is recorded *held*:
it is released by ``privacy.erasure_finished`` once every service has answered, and its row loses the
address as soon as it is sent (migration 0004). Both happen in the consumer's transaction, with its
inbox row, and the answer ``privacy.erasure_completed`` goes out through the outbox.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Text, func, literal, or_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.intents import template_name
from services.notification.mail import message_id_for
from services.notification.models import deliveries, outbox
from shared import events as ev
from shared.inbox import EventMeta, Handler
from shared.outbox import add_event

FINAL_MAIL_TEMPLATE = template_name(ev.PrivacyErasureFinished.event_type)
# Rows that will not be sent (again): their recipients can go after the retention period.
SETTLED_STATUSES = ("sent", "failed")
# What a delivery's context may hold about a person or their links (event-carried state).
PERSONAL_CONTEXT_KEYS = ["links", "edit_url", "status_url", "recipient", "author"]


def final_mail_key(request_id: uuid.UUID | str) -> str:
    """The last mail's deduplication key: one per request, and without the address."""
    return f"{request_id}:{FINAL_MAIL_TEMPLATE}"


def final_mail_context(request_id: uuid.UUID | str, language: str) -> dict[str, Any]:
    return {"request_id": str(request_id), "recipient": {"name": "", "email": "", "language": language}}


def _mentions(column: Any, address: str) -> Any:
    return func.lower(column.cast(Text)).contains(address, autoescape=True)


async def erase_address(session: AsyncConnection, email: str) -> int:
    """Delete every delivery-log row that holds ``email`` and every published event carrying it."""
    address = email.strip().lower()
    removed = await session.execute(
        deliveries.delete()
        .where(
            or_(
                func.lower(deliveries.c.recipient_email) == address,
                _mentions(deliveries.c.dedup_key, address),
                _mentions(deliveries.c.context, address),
                _mentions(deliveries.c.last_error, address),
            )
        )
        .returning(deliveries.c.id)
    )
    events = await session.execute(
        outbox.delete()
        .where(outbox.c.published_at.is_not(None))
        .where(_mentions(outbox.c.payload, address))
        .returning(outbox.c.id)
    )
    return len(removed.all()) + len(events.all())


def erasure_handler(message_id_domain: str) -> Handler:
    async def on_erasure_requested(
        session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta
    ) -> None:
        assert isinstance(event, ev.PrivacyErasureRequested)
        erased = await erase_address(session, event.email)
        key = final_mail_key(event.request_id)
        await session.execute(
            insert(deliveries)
            .values(
                id=uuid.uuid4(),
                dedup_key=key,
                event_id=str(event.request_id),
                event_type=ev.PrivacyErasureFinished.event_type,
                template=FINAL_MAIL_TEMPLATE,
                language=event.language,
                recipient_email=event.email,
                recipient_name="",
                message_id=message_id_for(key, message_id_domain),
                context=final_mail_context(event.request_id, event.language),
                status="held",
            )
            .on_conflict_do_nothing(index_elements=["dedup_key"])
        )
        await add_event(
            session,
            outbox,
            ev.PrivacyErasureCompleted(
                request_id=event.request_id, service="notification", records_erased=erased
            ),
        )

    return on_erasure_requested


async def release_final_mail(session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """Every service has answered: the held last mail may go."""
    assert isinstance(event, ev.PrivacyErasureFinished)
    await session.execute(
        update(deliveries)
        .where(deliveries.c.dedup_key == final_mail_key(event.request_id))
        .where(deliveries.c.status == "held")
        .values(status="pending", next_attempt_at=func.now(), updated_at=func.now())
    )


async def forget_recipients(session: AsyncConnection, days: float, now: datetime | None = None) -> int:
    """Retention: ``days`` after a mail was recorded, its row keeps no recipient, no links and no copy of
    the event's personal data; the deduplication key (which holds the address) becomes the row's id. One
    conditional UPDATE, so replicas running it together do the work once."""
    now = now or datetime.now(UTC)
    result = await session.execute(
        update(deliveries)
        .where(deliveries.c.created_at < now - timedelta(days=days))
        .where(deliveries.c.status.in_(SETTLED_STATUSES))
        .where(deliveries.c.recipient_email.is_not(None))
        .values(
            recipient_email=None,
            recipient_name=None,
            last_error=None,
            dedup_key=literal("forgotten:") + deliveries.c.id.cast(Text),
            context=deliveries.c.context.op("-")(literal(PERSONAL_CONTEXT_KEYS, type_=ARRAY(Text))),
            updated_at=now,
        )
        .returning(deliveries.c.id)
    )
    return len(result.all())
