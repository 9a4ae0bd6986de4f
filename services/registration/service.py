"""Use cases of the registration service. Each runs inside the caller's unit of work and never commits."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.registration import repository as repo
from services.registration.catalog_seed import WORKING_GROUPS
from services.registration.config import RegistrationSettings
from services.registration.models import meetings, outbox, registrations, working_groups
from services.registration.schemas import RegistrationRequest
from shared import events as ev
from shared.http import Problem
from shared.outbox import add_event


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Links:
    base: str

    def for_token(self, token: str) -> ev.SelfServiceLinks:
        return ev.SelfServiceLinks(
            confirm_url=f"{self.base}/v1/registrations/confirm?token={token}",
            status_url=f"{self.base}/v1/registrations/me?token={token}",
            cancel_url=f"{self.base}/v1/registrations/cancel?token={token}",
        )


# --- catalog -------------------------------------------------------------------------------------------


def meeting_info(row: Row[Any]) -> ev.MeetingInfo:
    return ev.MeetingInfo(
        number=row.number,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        venue=row.venue,
        address=row.address,
        sequence=row.sequence,
        cancelled=row.cancelled,
    )


async def seed_catalog(session: AsyncSession, settings: RegistrationSettings) -> bool:
    """On first start, create the working groups of the announcement and publish them. Idempotent."""
    # Two replicas starting together: the second waits here, then finds the catalog.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('registration.seed_catalog'))"))
    if await repo.count_working_groups(session) > 0:
        return False
    for position, wg in enumerate(WORKING_GROUPS, start=1):
        await session.execute(
            insert(working_groups).values(
                id=wg.id,
                title=wg.title,
                position=position,
                capacity=settings.default_capacity,
                expert_reserved=settings.default_expert_reserved,
            )
        )
        await session.execute(
            insert(meetings).values(
                [
                    {
                        "working_group_id": wg.id,
                        "number": 1,
                        "starts_at": wg.first.starts_at,
                        "venue": wg.first.venue,
                        "address": wg.first.address,
                    },
                    {"working_group_id": wg.id, "number": 2, "starts_at": None, "venue": "", "address": ""},
                ]
            )
        )
    for wg_row in await repo.list_working_groups(session):
        await publish_working_group(session, wg_row.id, changed=False)
    return True


async def publish_working_group(session: AsyncSession, working_group_id: str, *, changed: bool) -> None:
    wg = await repo.get_working_group(session, working_group_id)
    assert wg is not None
    rows = (await repo.meetings_of(session, [wg.id]))[wg.id]
    cls = ev.WorkingGroupChanged if changed else ev.WorkingGroupPublished
    await add_event(session, outbox, cls(id=wg.id, title=wg.title, meetings=[meeting_info(m) for m in rows]))


async def working_group_views(session: AsyncSession, ids: list[str] | None = None) -> list[dict[str, Any]]:
    groups = await repo.list_working_groups(session)
    if ids is not None:
        groups = [g for g in groups if g.id in ids]
    wg_ids = [g.id for g in groups]
    all_meetings = await repo.meetings_of(session, wg_ids)
    waitlisted = await repo.waitlist_counts(session, wg_ids)
    views = []
    for g in groups:
        confirmed = g.confirmed_general + g.confirmed_reserved
        views.append(
            {
                "id": g.id,
                "title": g.title,
                "capacity": g.capacity,
                "expert_reserved": g.expert_reserved,
                "confirmed": confirmed,
                "seats_left": max(g.capacity - confirmed, 0),
                "waitlisted": waitlisted.get(g.id, 0),
                "meetings": [
                    {
                        "number": m.number,
                        "starts_at": m.starts_at,
                        "ends_at": m.ends_at,
                        "venue": m.venue,
                        "address": m.address,
                        "cancelled": m.cancelled,
                    }
                    for m in all_meetings[g.id]
                ],
            }
        )
    return views


# --- registration ----------------------------------------------------------------------------------------


async def _event_context(
    session: AsyncSession, wg_id: str
) -> tuple[ev.WorkingGroupInfo, list[ev.MeetingInfo]]:
    wg = await repo.get_working_group(session, wg_id)
    assert wg is not None
    rows = (await repo.meetings_of(session, [wg_id]))[wg_id]
    return ev.WorkingGroupInfo(id=wg.id, title=wg.title), [meeting_info(m) for m in rows]


def recipient_of(row: Row[Any]) -> ev.Recipient:
    return ev.Recipient(email=row.email or "", name=row.name or "", language=row.language)


async def submit_registration(
    session: AsyncSession,
    settings: RegistrationSettings,
    request: RegistrationRequest,
    now: datetime | None = None,
) -> uuid.UUID:
    """Register a person for a working group (double opt-in). Returns the id to answer with.

    Registering again with an address that is already active creates nothing: the person is mailed their
    current status and the answer looks like the first one, so nobody can probe who is registered.
    """
    now = now or datetime.now(UTC)
    if await repo.get_working_group(session, request.working_group_id) is None:
        raise Problem(
            422,
            "Invalid request",
            "One or more fields are invalid.",
            errors=[{"field": "working_group_id", "message": "unknown working group"}],
        )
    email_key = str(request.email).lower()
    token = new_token()
    links = Links(settings.public_url).for_token(token)
    registration_id = uuid.uuid4()
    try:
        async with session.begin_nested():
            await session.execute(
                insert(registrations).values(
                    id=registration_id,
                    working_group_id=request.working_group_id,
                    status="pending_confirmation",
                    name=request.name,
                    email=str(request.email),
                    email_key=email_key,
                    language=request.language,
                    participant_type=request.participant_type,
                    organization=request.organization,
                    district=request.district,
                    accessibility_needs=request.accessibility_needs,
                    interpretation_language=request.interpretation_language,
                    token_hash=hash_token(token),
                    created_at=now,
                    updated_at=now,
                    expires_at=now + timedelta(hours=settings.confirmation_window_hours),
                )
            )
    except IntegrityError:
        await _tell_existing_status(session, request.working_group_id, email_key, token, links)
        return uuid.uuid4()

    wg, meeting_infos = await _event_context(session, request.working_group_id)
    await add_event(
        session,
        outbox,
        ev.RegistrationSubmitted(
            registration_id=registration_id,
            recipient=ev.Recipient(email=str(request.email), name=request.name, language=request.language),
            working_group=wg,
            meetings=meeting_infos,
            participant_type=request.participant_type,
            links=links,
        ),
    )
    return registration_id


async def _tell_existing_status(
    session: AsyncSession, wg_id: str, email_key: str, token: str, links: ev.SelfServiceLinks
) -> None:
    existing = await repo.active_registration_for(session, wg_id, email_key)
    if existing is None:  # it went inactive between the insert and this read; nothing to tell
        return
    # The mail carries fresh links: rotate the token so the newest mail's links work.
    await session.execute(
        registrations.update().where(registrations.c.id == existing.id).values(token_hash=hash_token(token))
    )
    position = None
    if existing.status == "waitlisted" and existing.waitlist_seq is not None:
        position = await repo.waitlist_position(session, wg_id, existing.waitlist_seq)
    wg, meeting_infos = await _event_context(session, wg_id)
    await add_event(
        session,
        outbox,
        ev.RegistrationResubmitted(
            registration_id=existing.id,
            recipient=recipient_of(existing),
            working_group=wg,
            meetings=meeting_infos,
            participant_type=existing.participant_type,
            links=links,
            status=existing.status,
            waitlist_position=position,
        ),
    )
