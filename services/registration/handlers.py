"""Event handlers of the registration service: thin, idempotent (the inbox runs them once), calling the
service's use cases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import privacy, service
from services.registration.catalog import CatalogCache
from services.registration.config import RegistrationSettings
from services.registration.models import outbox
from shared import events as ev
from shared.inbox import EventMeta, Handler
from shared.outbox import add_event


def erasure_handlers(settings: RegistrationSettings, catalog: CatalogCache) -> dict[str, Handler]:
    """Erasure on request (Art. 17): this service's part, answered with ``privacy.erasure_completed``."""

    async def on_erasure_requested(
        conn: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta
    ) -> None:
        assert isinstance(event, ev.PrivacyErasureRequested)
        erased = await privacy.erase_address(conn, settings, catalog, event.email)
        await add_event(
            conn,
            outbox,
            ev.PrivacyErasureCompleted(
                request_id=event.request_id, service="registration", records_erased=erased
            ),
        )

    return {ev.PrivacyErasureRequested.event_type: on_erasure_requested}


async def on_erasure_completed(conn: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """One service's answer to an erasure this service started."""
    assert isinstance(event, ev.PrivacyErasureCompleted)
    await privacy.record_answer(conn, event)


def erasure_progress_handlers() -> dict[str, Handler]:
    return {ev.PrivacyErasureCompleted.event_type: on_erasure_completed}


async def on_mail_bounced(conn: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """A mail about a registration failed for good. A mail about no registration changes nothing here."""
    assert isinstance(event, ev.MailBounced)
    if event.registration_id is not None:
        await service.record_mail_bounced(conn, event.registration_id, meta.occurred_at or datetime.now(UTC))


def mail_status_handlers() -> dict[str, Handler]:
    return {ev.MailBounced.event_type: on_mail_bounced}
