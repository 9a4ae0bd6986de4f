"""Event handlers of the proposals service: thin, idempotent (the inbox runs them once), calling the
service's use cases."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.proposals import measures_service, service
from services.proposals.models import outbox
from shared import events as ev
from shared.inbox import EventMeta, Handler
from shared.outbox import add_event
from shared.topology import PROPOSALS_ATTENDANCE, PROPOSALS_CATALOG


def catalog_handlers() -> dict[str, Handler]:
    """The read model of the registration service's catalog: working_group.published / .changed."""
    return {key: service.apply_working_group for key in PROPOSALS_CATALOG.routing_keys}


async def on_erasure_requested(conn: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """Erasure on request (Art. 17): the author's contact data goes from every proposal sent from the
    address (the proposals stay, anonymous), in the consumer's transaction with its inbox row, and the
    answer ``privacy.erasure_completed`` goes out through the outbox."""
    assert isinstance(event, ev.PrivacyErasureRequested)
    erased = await service.forget_author(conn, event.email)
    erased += await measures_service.forget_follower_address(conn, event.email)
    await add_event(
        conn,
        outbox,
        ev.PrivacyErasureCompleted(request_id=event.request_id, service="proposals", records_erased=erased),
    )


def attendance_handlers() -> dict[str, Handler]:
    """Attendance counts per meeting for open data: meeting.attendance_counted (the highest revision)."""
    return {key: measures_service.apply_attendance for key in PROPOSALS_ATTENDANCE.routing_keys}


def erasure_handlers() -> dict[str, Handler]:
    return {ev.PrivacyErasureRequested.event_type: on_erasure_requested}
