"""Use cases of the registration service. Each runs inside the caller's unit of work and never commits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain
from services.registration import repository as repo
from services.registration.catalog_seed import BERLIN, WORKING_GROUPS
from services.registration.config import RegistrationSettings
from services.registration.models import (
    PERSONAL_DATA_COLUMNS,
    audit_log,
    idempotency_keys,
    meetings,
    outbox,
    registrations,
    working_groups,
)
from services.registration.schemas import RegistrationRequest
from shared import events as ev
from shared.audit import record as audit_log_record
from shared.http import Problem
from shared.outbox import add_event


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_for(settings: RegistrationSettings, registration_id: uuid.UUID) -> str:
    """A registration's self-service token: an HMAC of its id under the service's secret.

    The same for every mail, so the links in an earlier mail keep working when a later one (a promotion,
    a meeting change, a reminder, registering again) is sent. The database keeps only its SHA-256, so a
    copy of the tables does not hand out working links.
    """
    digest = hmac.new(settings.token_secret.encode(), registration_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Links:
    base: str

    @classmethod
    def of(cls, settings: RegistrationSettings, registration_id: uuid.UUID) -> ev.SelfServiceLinks:
        return cls(settings.public_url).for_token(token_for(settings, registration_id))

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


async def seed_catalog(session: AsyncConnection, settings: RegistrationSettings) -> bool:
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


async def publish_working_group(session: AsyncConnection, working_group_id: str, *, changed: bool) -> None:
    wg = await repo.get_working_group(session, working_group_id)
    assert wg is not None
    rows = (await repo.meetings_of(session, [wg.id]))[wg.id]
    cls = ev.WorkingGroupChanged if changed else ev.WorkingGroupPublished
    await add_event(
        session,
        outbox,
        cls(
            id=wg.id,
            title=wg.title,
            meetings=[meeting_info(m) for m in rows],
            catalog_version=wg.catalog_version,
        ),
    )


def _berlin(value: datetime | None) -> datetime | None:
    return value.astimezone(BERLIN) if value is not None else None


async def working_group_views(session: AsyncConnection, ids: list[str] | None = None) -> list[dict[str, Any]]:
    groups = await repo.list_working_groups(session)
    if ids is not None:
        groups = [g for g in groups if g.id in ids]
    wg_ids = [g.id for g in groups]
    all_meetings = await repo.meetings_of(session, wg_ids)
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
                "waitlisted": g.waitlisted,
                "meetings": [
                    {
                        "number": m.number,
                        # API.md: meetings are in Europe/Berlin; the offset says so (+01:00 / +02:00).
                        "starts_at": _berlin(m.starts_at),
                        "ends_at": _berlin(m.ends_at),
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


CatalogEntry = tuple[ev.WorkingGroupInfo, list[ev.MeetingInfo]]


class CatalogCache:
    """Working group titles and meetings for events, kept per process.

    Every registration and confirmation puts them into its event; reading them each time cost two queries
    per request. Where the working group's row is read under its lock (confirming, cancelling, promoting)
    the caller passes its ``catalog_version``, raised by every meeting change, and a stale entry is read
    again: those mails always carry the current meetings. Elsewhere (the confirm-your-registration mail)
    an entry is trusted for ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, int, CatalogEntry]] = {}

    async def get(
        self, session: AsyncConnection, wg_id: str, version: int | None = None
    ) -> CatalogEntry | None:
        hit = self._entries.get(wg_id)
        if hit is not None:
            loaded_at, loaded_version, entry = hit
            if version is None and time.monotonic() - loaded_at < self.ttl:
                return entry
            if version is not None and loaded_version == version:
                return entry
        wg = await repo.get_working_group(session, wg_id)
        if wg is None:
            return None
        rows = (await repo.meetings_of(session, [wg_id]))[wg_id]
        entry = (ev.WorkingGroupInfo(id=wg.id, title=wg.title), [meeting_info(m) for m in rows])
        self._entries[wg_id] = (time.monotonic(), wg.catalog_version, entry)
        return entry

    def invalidate(self, wg_id: str) -> None:
        self._entries.pop(wg_id, None)


catalog_cache = CatalogCache()


async def _event_context(session: AsyncConnection, wg_id: str, version: int | None = None) -> CatalogEntry:
    entry = await catalog_cache.get(session, wg_id, version)
    assert entry is not None, f"working group {wg_id} vanished"
    return entry


def recipient_of(row: Row[Any]) -> ev.Recipient:
    return ev.Recipient(email=row.email or "", name=row.name or "", language=row.language)


# Built once: the hot path passes only parameters. An address already active in the working group makes
# the insert do nothing (see submit_registration).
_INSERT_REGISTRATION = (
    pg_insert(registrations)
    .on_conflict_do_nothing(
        index_elements=["working_group_id", "email_key"],
        # Literal, not bound parameters: Postgres must match it against the partial index's predicate.
        index_where=text("status IN ('pending_confirmation', 'confirmed', 'waitlisted')"),
    )
    .returning(registrations.c.id)
)


async def submit_registration(
    session: AsyncConnection,
    settings: RegistrationSettings,
    request: RegistrationRequest,
    now: datetime | None = None,
) -> uuid.UUID:
    """Register a person for a working group (double opt-in). Returns the id to answer with.

    Registering again with an address that is already active creates nothing: the person is mailed their
    current status and the answer looks like the first one, so nobody can probe who is registered.
    """
    now = now or datetime.now(UTC)
    await _check_opt_in_budget(session, settings, now)
    context = await catalog_cache.get(session, request.working_group_id)
    if context is None:
        raise Problem(
            422,
            "Invalid request",
            "One or more fields are invalid.",
            errors=[{"field": "working_group_id", "message": "unknown working group"}],
        )
    email_key = str(request.email).lower()
    registration_id = uuid.uuid4()
    token = token_for(settings, registration_id)
    inserted = await session.execute(
        _INSERT_REGISTRATION,
        {
            "id": registration_id,
            "working_group_id": request.working_group_id,
            "status": "pending_confirmation",
            "name": request.name,
            "email": str(request.email),
            "email_key": email_key,
            "language": request.language,
            "participant_type": request.participant_type,
            "organization": request.organization,
            "district": request.district,
            "accessibility_needs": request.accessibility_needs,
            "interpretation_language": request.interpretation_language,
            "token_hash": hash_token(token),
            "created_at": now,
            "updated_at": now,
            "expires_at": now + timedelta(hours=settings.confirmation_window_hours),
            "public_mail_at": now,
        },
    )
    if inserted.first() is None:
        await _tell_existing_status(session, settings, request.working_group_id, email_key, now)
        return uuid.uuid4()

    wg, meeting_infos = context
    await add_event(
        session,
        outbox,
        ev.RegistrationSubmitted(
            registration_id=registration_id,
            # The name is not shown before the address is proven: anyone may type any name (and URL).
            recipient=ev.Recipient(email=str(request.email), name="", language=request.language),
            working_group=wg,
            meetings=meeting_infos,
            participant_type=request.participant_type,
            links=Links(settings.public_url).for_token(token),
        ),
    )
    return registration_id


async def _check_opt_in_budget(
    session: AsyncConnection, settings: RegistrationSettings, now: datetime
) -> None:
    """All opt-in mails together stay under ``opt_in_mails_per_hour`` (approximately: concurrent requests
    may each see the last free place)."""
    if settings.opt_in_mails_per_hour <= 0:
        return
    if await repo.public_mails_since(session, now - timedelta(hours=1)) >= settings.opt_in_mails_per_hour:
        raise Problem(
            429,
            "Too many requests",
            "Registrations are paused for a short while. Please try again later.",
            headers={"Retry-After": "600"},
        )


async def _tell_existing_status(
    session: AsyncConnection, settings: RegistrationSettings, wg_id: str, email_key: str, now: datetime
) -> None:
    existing = await repo.active_registration_for(session, wg_id, email_key)
    if existing is None:  # it went inactive between the insert and this read; nothing to tell
        return
    interval = timedelta(hours=settings.public_mail_interval_hours)
    if not await repo.claim_public_mail(session, existing.id, now, interval):
        return  # this address was mailed for this working group recently: answer alike, send nothing
    position = None
    if existing.status == "waitlisted" and existing.waitlist_seq is not None:
        position = await repo.waitlist_position(session, wg_id, existing.waitlist_seq)
    wg, meeting_infos = await _event_context(session, wg_id)
    await add_event(
        session,
        outbox,
        ev.RegistrationResubmitted(
            registration_id=existing.id,
            # Sent on a public POST: whoever posted typed the address, so no name is shown.
            recipient=recipient_of(existing).model_copy(update={"name": ""}),
            working_group=wg,
            meetings=meeting_infos,
            participant_type=existing.participant_type,
            links=Links.of(settings, existing.id),
            status=existing.status,
            waitlist_position=position,
        ),
    )


# --- confirmation, cancellation, the waitlist ------------------------------------------------------------

_TERMINAL_NOT_FOUND = ("expired",)


def _seat_counts(group: repo.GroupCounters) -> domain.SeatCounts:
    return domain.SeatCounts(
        capacity=group.capacity,
        expert_reserved=group.expert_reserved,
        confirmed_general=group.confirmed_general,
        confirmed_reserved=group.confirmed_reserved,
    )


def _with_seats(group: repo.GroupCounters, counts: domain.SeatCounts) -> repo.GroupCounters:
    return replace(
        group, confirmed_general=counts.confirmed_general, confirmed_reserved=counts.confirmed_reserved
    )


def _not_found() -> Problem:
    return Problem(404, "Not found", "This link is unknown or has expired.")


# What a link revoked by cancelling answers: that it was cancelled, nothing more.
CANCELLED_ONLY: dict[str, Any] = {"status": "cancelled"}
LINK_GRACE = timedelta(days=1)


def links_expired(meeting_infos: list[ev.MeetingInfo], now: datetime) -> bool:
    """A self-service link ends a day after its working group's last meeting (while a date is still
    to be announced, it lives on)."""
    if not meeting_infos or any(m.starts_at is None for m in meeting_infos):
        return False
    last = max((m.ends_at or m.starts_at) for m in meeting_infos if m.starts_at is not None)
    return last + LINK_GRACE < now


async def _link_expired(session: AsyncConnection, wg_id: str, now: datetime) -> bool:
    entry = await catalog_cache.get(session, wg_id)
    return entry is not None and links_expired(entry[1], now)


async def revoked_link(session: AsyncConnection, token: str) -> bool:
    """Whether ``token`` is the link of a registration that was cancelled (and its token rotated)."""
    return await repo.registration_by_revoked_token_hash(session, hash_token(token)) is not None


async def registration_state(session: AsyncConnection, registration: Row[Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"id": registration.id, "status": registration.status}
    if registration.status == "waitlisted" and registration.waitlist_seq is not None:
        state["waitlist_position"] = await repo.waitlist_position(
            session, registration.working_group_id, registration.waitlist_seq
        )
    return state


async def _current_state(session: AsyncConnection, token_hash: str) -> dict[str, Any]:
    """The state as it is now (after another request changed it): what an already used link answers."""
    registration = await repo.registration_by_token_hash(session, token_hash)
    if registration is None or registration.status in _TERMINAL_NOT_FOUND:
        raise _not_found()
    # An already used link answers with the current status (API.md), a cancelled one included.
    return await registration_state(session, registration)


async def confirm_registration(
    session: AsyncConnection, settings: RegistrationSettings, token: str, now: datetime | None = None
) -> dict[str, Any]:
    """Double opt-in: a seat if one fits (first confirmed, first served), else the waitlist.

    Four statements, the first of which takes the working group's lock: the lock is held as briefly as the
    request allows, because every confirmation of the working group queues behind it.
    """
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    found = await repo.registration_with_locked_group(session, token_hash)
    if found is None:
        if await revoked_link(session, token):
            return dict(CANCELLED_ONLY)
        raise _not_found()
    registration, group = found
    if await _link_expired(session, registration.working_group_id, now):
        raise _not_found()
    if registration.status != "pending_confirmation" or (
        registration.expires_at is not None and registration.expires_at <= now
    ):
        if registration.status == "pending_confirmation":
            raise _not_found()  # expired; the expiry job will tidy up
        return await _current_state(session, token_hash)

    seat, counts = domain.allocate(_seat_counts(group), registration.participant_type)
    if seat is not None:
        status, waitlist_seq, position = "confirmed", None, None
        group = _with_seats(group, counts)
    else:
        status, waitlist_seq = "waitlisted", group.waitlist_seq + 1
        # A new place is the last one: the position is the waitlist's length.
        position = group.waitlisted + 1
        group = replace(group, waitlist_seq=waitlist_seq, waitlisted=position)
    if not await repo.apply_decision(session, registration.id, status, seat, waitlist_seq, group, now):
        return await _current_state(session, token_hash)  # a second click (or the expiry job) was first

    info, meeting_infos = await _event_context(session, group.id, group.catalog_version)
    common = {
        "registration_id": registration.id,
        "recipient": recipient_of(registration),
        "working_group": info,
        "meetings": meeting_infos,
        "participant_type": registration.participant_type,
        "links": Links(settings.public_url).for_token(token),
    }
    if position is None:
        await add_event(session, outbox, ev.RegistrationConfirmed(**common))
        return {"id": registration.id, "status": "confirmed"}
    await add_event(session, outbox, ev.RegistrationWaitlisted(**common, waitlist_position=position))
    return {"id": registration.id, "status": "waitlisted", "waitlist_position": position}


async def cancel_registration(
    session: AsyncConnection, settings: RegistrationSettings, token: str, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    found = await repo.registration_with_locked_group(session, token_hash)
    if found is None:
        if await revoked_link(session, token):
            return dict(CANCELLED_ONLY)
        raise _not_found()
    _, group = found
    if await _link_expired(session, group.id, now):
        raise _not_found()
    # Read again under the lock: the joined columns come from before the lock was granted.
    registration = await repo.registration_by_token_hash(session, token_hash, for_update=True)
    if registration is None or registration.status in _TERMINAL_NOT_FOUND:
        raise _not_found()
    if registration.status == "cancelled":
        return dict(CANCELLED_ONLY)
    if registration.status == "confirmed":
        group = _with_seats(group, domain.release(_seat_counts(group), registration.seat))
    elif registration.status == "waitlisted":
        group = replace(group, waitlisted=max(0, group.waitlisted - 1))
    await session.execute(
        registrations.update()
        .where(registrations.c.id == registration.id)
        .values(
            status="cancelled",
            seat=None,
            waitlist_seq=None,
            cancelled_at=now,
            expires_at=None,
            updated_at=now,
            # The token is rotated: the mailed link now only says "cancelled" (revoked_token_hash).
            token_hash=hash_token(secrets.token_urlsafe(32)),
            revoked_token_hash=token_hash,
        )
    )
    await repo.store_seat_counters(session, group, now)
    info, meeting_infos = await _event_context(session, group.id, group.catalog_version)
    await add_event(
        session,
        outbox,
        ev.RegistrationCancelled(
            registration_id=registration.id,
            recipient=recipient_of(registration),
            working_group=info,
            meetings=meeting_infos,
            participant_type=registration.participant_type,
            links=Links(settings.public_url).for_token(token),
        ),
    )
    if registration.status == "confirmed":
        await _promote_from_waitlist(session, settings, group, now)
    return {"id": registration.id, "status": "cancelled"}


async def _promote_from_waitlist(
    session: AsyncConnection,
    settings: RegistrationSettings,
    group: repo.GroupCounters,
    now: datetime,
) -> int:
    """Give free seats to the waitlist, in order. The caller holds the working group's lock."""
    waiting_rows = await repo.waitlist(session, group.id)
    promoted, counts = domain.promotions(
        _seat_counts(group), [domain.Waiting(r.id, r.participant_type) for r in waiting_rows]
    )
    group = replace(_with_seats(group, counts), waitlisted=max(0, group.waitlisted - len(promoted)))
    await repo.store_seat_counters(session, group, now)
    if not promoted:
        return 0
    by_id = {r.id: r for r in waiting_rows}
    info, meeting_infos = await _event_context(session, group.id, group.catalog_version)
    for waiting, seat in promoted:
        row = by_id[waiting.registration_id]
        await session.execute(
            registrations.update()
            .where(registrations.c.id == row.id)
            .values(status="confirmed", seat=seat, waitlist_seq=None, updated_at=now)
        )
        await add_event(
            session,
            outbox,
            ev.RegistrationPromoted(
                registration_id=row.id,
                recipient=recipient_of(row),
                working_group=info,
                meetings=meeting_infos,
                participant_type=row.participant_type,
                links=Links.of(settings, row.id),
            ),
        )
    return len(promoted)


async def registration_status(
    session: AsyncConnection, token: str, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    registration = await repo.registration_by_token_hash(session, hash_token(token))
    if registration is None and await revoked_link(session, token):
        return dict(CANCELLED_ONLY)
    if registration is None or registration.status in _TERMINAL_NOT_FOUND:
        raise _not_found()
    if registration.status == "cancelled":
        return dict(CANCELLED_ONLY)  # no personal data of a cancelled registration
    if await _link_expired(session, registration.working_group_id, now):
        raise _not_found()
    views = await working_group_views(session, [registration.working_group_id])
    state = await registration_state(session, registration)
    return {
        **state,
        "working_group": {"id": views[0]["id"], "title": views[0]["title"], "meetings": views[0]["meetings"]},
        "name": registration.name,
        "email": registration.email,
        "language": registration.language,
        "participant_type": registration.participant_type,
        "created_at": registration.created_at,
        "confirmed_at": registration.confirmed_at,
    }


# --- staff: capacity and meetings --------------------------------------------------------------------------


async def change_working_group(
    session: AsyncConnection,
    settings: RegistrationSettings,
    wg_id: str,
    *,
    capacity: int | None,
    expert_reserved: int | None,
    now: datetime | None = None,
) -> int:
    """Change capacity or the expert reservation; more room promotes from the waitlist. Returns promotions."""
    now = now or datetime.now(UTC)
    wg = await repo.lock_working_group(session, wg_id)
    if wg is None:
        raise Problem(404, "Not found", "There is no working group with this id.")
    new_capacity = wg.capacity if capacity is None else capacity
    new_reserved = wg.expert_reserved if expert_reserved is None else expert_reserved
    errors = domain.validate_capacity(new_capacity, new_reserved)
    if errors:
        raise Problem(422, "Invalid request", "One or more fields are invalid.", errors=errors)
    await session.execute(
        working_groups.update()
        .where(working_groups.c.id == wg_id)
        .values(capacity=new_capacity, expert_reserved=new_reserved, updated_at=now)
    )
    group = replace(repo.GroupCounters.of(wg), capacity=new_capacity, expert_reserved=new_reserved)
    promoted = await _promote_from_waitlist(session, settings, group, now)
    await publish_working_group(session, wg_id, changed=True)
    catalog_cache.invalidate(wg_id)
    return promoted


async def change_meeting(
    session: AsyncConnection,
    settings: RegistrationSettings,
    wg_id: str,
    number: int,
    changes: dict[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Change a meeting's date, venue or address, or cancel it; every confirmed participant is told."""
    now = now or datetime.now(UTC)
    wg = await repo.lock_working_group(session, wg_id)
    if wg is None:
        raise Problem(404, "Not found", "There is no working group with this id.")
    before = await repo.meeting(session, wg_id, number, for_update=True)
    if before is None:
        raise Problem(404, "Not found", "There is no meeting with this number.")
    values = {k: v for k, v in changes.items() if v is not None or k in ("starts_at", "ends_at")}
    starts = values.get("starts_at", before.starts_at)
    ends = values.get("ends_at", before.ends_at)
    if starts is not None and ends is not None and ends <= starts:
        raise Problem(
            422, "Invalid request", errors=[{"field": "ends_at", "message": "must be after starts_at"}]
        )
    if not values:
        return {"number": before.number}
    await session.execute(
        meetings.update()
        .where(meetings.c.working_group_id == wg_id, meetings.c.number == number)
        .values(**values, sequence=before.sequence + 1)
    )
    await session.execute(
        working_groups.update()
        .where(working_groups.c.id == wg_id)
        .values(catalog_version=working_groups.c.catalog_version + 1, updated_at=now)
    )
    after = await repo.meeting(session, wg_id, number)
    assert after is not None
    participants = await _confirmed_participants(session, settings, wg_id)
    info = ev.WorkingGroupInfo(id=wg.id, title=wg.title)
    if after.cancelled and not before.cancelled:
        await add_event(
            session,
            outbox,
            ev.MeetingCancelled(working_group=info, meeting=meeting_info(after), participants=participants),
        )
    elif not after.cancelled:
        await add_event(
            session,
            outbox,
            ev.MeetingRescheduled(
                working_group=info,
                meeting=meeting_info(after),
                previous=meeting_info(before),
                participants=participants,
            ),
        )
    await publish_working_group(session, wg_id, changed=True)
    catalog_cache.invalidate(wg_id)
    return {"number": after.number}


async def _confirmed_participants(
    session: AsyncConnection, settings: RegistrationSettings, wg_id: str
) -> list[ev.Participant]:
    """Confirmed participants, each with their self-service links."""
    return [
        ev.Participant(registration_id=row.id, recipient=recipient_of(row), links=Links.of(settings, row.id))
        for row in await repo.confirmed_registrations(session, wg_id)
    ]


# --- periodic jobs ----------------------------------------------------------------------------------------------


async def expire_unconfirmed(
    session: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None, batch: int = 200
) -> int:
    """Expire registrations not confirmed in time, tell the person, and delete their personal data."""
    now = now or datetime.now(UTC)
    rows = await repo.claim_expired(session, now, batch)
    for row in rows:
        info, meeting_infos = await _event_context(session, row.working_group_id)
        await add_event(
            session,
            outbox,
            ev.RegistrationExpired(
                registration_id=row.id,
                recipient=recipient_of(row),
                working_group=info,
                meetings=meeting_infos,
                participant_type=row.participant_type,
            ),
        )
        await session.execute(
            registrations.update()
            .where(registrations.c.id == row.id)
            .values(
                status="expired",
                **dict.fromkeys(PERSONAL_DATA_COLUMNS),
                updated_at=now,
            )
        )
    return len(rows)


async def send_due_reminders(
    session: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
) -> int:
    """Emit ``meeting.reminder_due`` once per meeting date, however many replicas run this job.

    Per due meeting: lock the working group (the lock order of every other change: group first), then
    claim the meeting with one conditional UPDATE that sets ``reminder_sent_for`` to its date; a replica
    that comes second re-checks the condition and matches nothing. Participants are read under the group
    lock, so someone cancelling right now is either reminded before or not at all. A rescheduled meeting
    has a new date, so its participants are reminded of the new one.
    """
    now = now or datetime.now(UTC)
    lead = timedelta(hours=settings.reminder_lead_hours)
    sent = 0
    for candidate in await repo.meetings_due_for_reminder(session, now, lead):
        wg = await repo.lock_working_group(session, candidate.working_group_id)
        meeting_row = await repo.claim_reminder(
            session, candidate.working_group_id, candidate.number, now, lead
        )
        if wg is None or meeting_row is None:
            continue
        sent += 1
        participants = await _confirmed_participants(session, settings, wg.id)
        if participants:
            await add_event(
                session,
                outbox,
                ev.MeetingReminderDue(
                    working_group=ev.WorkingGroupInfo(id=wg.id, title=wg.title),
                    meeting=meeting_info(meeting_row),
                    participants=participants,
                ),
            )
    return sent


async def audit(
    session: AsyncConnection, subject: str, action: str, target: str, details: dict[str, Any]
) -> None:
    await audit_log_record(session, audit_log, subject, action, target, details)


async def forget_idempotency_keys(session: AsyncConnection, settings: RegistrationSettings) -> None:
    """Idempotency keys count for ``idempotency_ttl_hours`` (24 h): the same key later is a new request."""
    cutoff = datetime.now(UTC) - timedelta(hours=settings.idempotency_ttl_hours)
    await session.execute(idempotency_keys.delete().where(idempotency_keys.c.created_at < cutoff))
