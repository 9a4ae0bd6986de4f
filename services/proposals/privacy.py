"""The proposals service's part in erasure on request (Art. 17): the author's contact data goes from
every proposal sent from the address (the proposals stay, anonymous), in the consumer's transaction
with its inbox row, and the answer ``privacy.erasure_completed`` goes out through the outbox."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import service
from services.proposals.models import outbox
from shared import events as ev
from shared.inbox import EventMeta
from shared.outbox import add_event


async def on_erasure_requested(session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    assert isinstance(event, ev.PrivacyErasureRequested)
    erased = await service.forget_author(session, event.email)
    await add_event(
        session,
        outbox,
        ev.PrivacyErasureCompleted(request_id=event.request_id, service="proposals", records_erased=erased),
    )
