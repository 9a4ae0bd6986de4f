"""Use cases of the registration service: load, apply the rule from ``domain``, store through
``repository``, add the outbox event. Each runs inside the caller's unit of work and never commits;
refusals are ``domain`` errors (``api.py`` maps them to problem+json)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain
from services.registration import repository as repo
from services.registration.catalog import CatalogCache, CatalogEntry, working_group_view
from services.registration.config import RegistrationSettings
from services.registration.models import audit_log, idempotency_keys, outbox
from services.registration.schemas import RegistrationRequest
from shared import events as ev
from shared.addresses import mailbox
from shared.audit import record as audit_log_record
from shared.calendar import build_calendar
from shared.idempotency import forget_keys
from shared.outbox import add_event, stage_event
from shared.tokens import hash_token, token_for

# What a link revoked by cancelling answers: that it was cancelled, nothing more.
CANCELLED_ONLY: dict[str, Any] = {"status": "cancelled"}
LINK_NOT_FOUND = "This link is unknown or has expired."


@dataclass(frozen=True)
class Links:
    base: str

    @classmethod
    def of(cls, settings: RegistrationSettings, registration_id: uuid.UUID) -> ev.SelfServiceLinks:
        return cls(settings.public_url).for_token(token_for(settings.token_secret, registration_id))

    def for_token(self, token: str) -> ev.SelfServiceLinks:
        return ev.SelfServiceLinks(
            confirm_url=f"{self.base}/v1/registrations/confirm?token={token}",
            status_url=f"{self.base}/v1/registrations/me?token={token}",
            cancel_url=f"{self.base}/v1/registrations/cancel?token={token}",
        )


# --- registering ------------------------------------------------------------------------------------------


# A registration's address is proven once the person confirmed it or acted with a mailed token (a
# cancellation needs the link from a mail); before that, or when it expired unconfirmed, it is not.
_UNPROVEN_STATUSES = frozenset({"pending_confirmation", "expired"})


def recipient_of(row: Row[Any]) -> ev.Recipient:
    return ev.Recipient(
        email=row.email or "",
        name=row.name or "",
        language=row.language,
        address_proven=row.status not in _UNPROVEN_STATUSES,
    )


def _about(
    registration_id: uuid.UUID,
    recipient: ev.Recipient,
    entry: CatalogEntry,
    participant_type: str,
    links: ev.SelfServiceLinks | None = None,
) -> dict[str, Any]:
    """The fields every registration event carries."""
    working_group, meeting_infos = entry
    about: dict[str, Any] = {
        "registration_id": registration_id,
        "recipient": recipient,
        "working_group": working_group,
        "meetings": meeting_infos,
        "participant_type": participant_type,
    }
    if links is not None:
        about["links"] = links
    return about


async def submit_registration(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    request: RegistrationRequest,
    now: datetime | None = None,
) -> uuid.UUID:
    """Register a person for a working group (double opt-in). Returns the id to answer with.

    Registering again with an address that is already active creates nothing: the person is mailed their
    current status and the answer looks like the first one, so nobody can probe who is registered.
    A filled honeypot (``website``) is a bot: the answer looks alike and nothing is stored or sent.
    """
    if request.website:
        return uuid.uuid4()
    now = now or datetime.now(UTC)
    entry = await catalog.get(conn, request.working_group_id)
    if entry is None:
        raise domain.InvalidRequest(
            "One or more fields are invalid.",
            errors=[{"field": "working_group_id", "message": "unknown working group"}],
        )
    email_key = str(request.email).lower()
    registration_id = uuid.uuid4()
    token = token_for(settings.token_secret, registration_id)
    # The name is not shown before the address is proven: anyone may type any name (and URL).
    recipient = ev.Recipient(email=str(request.email), name="", language=request.language)
    links = Links(settings.public_url).for_token(token)
    event = ev.RegistrationSubmitted(
        **_about(registration_id, recipient, entry, request.participant_type, links)
    )
    mailbox_key = mailbox(str(request.email))
    sent = await repo.opt_in_mails_sent(
        conn,
        mailbox_key,
        settings.opt_in_mails_per_mailbox_per_day,
        now - timedelta(days=1),
        settings.opt_in_mails_per_hour,
        now - timedelta(hours=1),
    )
    decision = domain.opt_in_mail(
        *sent, settings.opt_in_mails_per_mailbox_per_day, settings.opt_in_mails_per_hour
    )
    if decision == "silent":
        return uuid.uuid4()
    if decision == "paused":
        raise domain.mails_paused("Registrations")
    inserted = await repo.insert_registration(
        conn,
        {
            "id": registration_id,
            "working_group_id": request.working_group_id,
            "status": "pending_confirmation",
            "name": request.name,
            "email": str(request.email),
            "email_key": email_key,
            "mailbox_key": mailbox_key,
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
        stage_event(conn, event),
    )
    if not inserted:
        await _tell_existing_status(conn, settings, catalog, request.working_group_id, email_key, now)
        return uuid.uuid4()
    return registration_id


async def _tell_existing_status(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    wg_id: str,
    email_key: str,
    now: datetime,
) -> None:
    existing = await repo.active_registration_for(conn, wg_id, email_key)
    if existing is None:  # it went inactive between the insert and this read; nothing to tell
        return
    interval = timedelta(hours=settings.public_mail_interval_hours)
    if not await repo.claim_public_mail(conn, existing.id, now, interval):
        return  # this address was mailed for this working group recently: answer alike, send nothing
    position = None
    if existing.status == "waitlisted" and existing.waitlist_seq is not None:
        position = await repo.waitlist_position(conn, wg_id, existing.waitlist_seq)
    # Sent on a public POST: whoever posted typed the address, so no name is shown.
    recipient = recipient_of(existing).model_copy(update={"name": ""})
    about = _about(
        existing.id,
        recipient,
        await catalog.entry(conn, wg_id),
        existing.participant_type,
        Links.of(settings, existing.id),
    )
    await add_event(
        conn,
        outbox,
        ev.RegistrationResubmitted(**about, status=existing.status, waitlist_position=position),
    )


# --- confirmation, cancellation, the waitlist ------------------------------------------------------------


async def _link_expired(conn: AsyncConnection, catalog: CatalogCache, wg_id: str, now: datetime) -> bool:
    entry = await catalog.get(conn, wg_id)
    return entry is not None and domain.links_expired(entry[1], now)


async def revoked_link(conn: AsyncConnection, token: str) -> bool:
    """Whether ``token`` is the link of a registration that was cancelled (and its token rotated)."""
    return await repo.registration_by_revoked_token_hash(conn, hash_token(token)) is not None


async def registration_state(conn: AsyncConnection, registration: Row[Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"id": registration.id, "status": registration.status}
    if registration.status == "waitlisted" and registration.waitlist_seq is not None:
        state["waitlist_position"] = await repo.waitlist_position(
            conn, registration.working_group_id, registration.waitlist_seq
        )
    return state


async def _current_state(conn: AsyncConnection, token_hash: str) -> dict[str, Any]:
    """The state as it is now (after another request changed it): what an already used link answers."""
    registration = await repo.registration_by_token_hash(conn, token_hash)
    if registration is None or registration.status == "expired":
        raise domain.NotFound(LINK_NOT_FOUND)
    # An already used link answers with the current status (API.md), a cancelled one included.
    return await registration_state(conn, registration)


async def confirm_registration(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    token: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Double opt-in: a seat if one fits (first confirmed, first served), else the waitlist.

    The working group's row is locked first (the lock order everywhere: group, then registration), the
    seat is decided by ``domain.confirm`` on the counters read under that lock, and the registration, the
    counters and the event are written together in the caller's unit of work, only if the registration is
    still pending: a second click (or the expiry job) that came first wins.
    """
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    found = await repo.registration_with_locked_group(conn, token_hash)
    if found is None:
        if await revoked_link(conn, token):
            return dict(CANCELLED_ONLY)
        raise domain.NotFound(LINK_NOT_FOUND)
    registration, group = found
    # Read under the group's lock: every meeting change raises ``catalog_version`` under the same lock.
    entry = await catalog.entry(conn, group.id, group.catalog_version)
    if domain.links_expired(entry[1], now):
        raise domain.NotFound(LINK_NOT_FOUND)
    needed = domain.confirmation_needed(registration.status, registration.expires_at, now)
    if needed is None:
        raise domain.NotFound(LINK_NOT_FOUND)  # expired; the expiry job will tidy up
    if not needed:
        return await _current_state(conn, token_hash)
    decided = domain.confirm(group, registration.participant_type)
    # Confirming with the mailed link proves the address.
    recipient = recipient_of(registration).model_copy(update={"address_proven": True})
    links = Links(settings.public_url).for_token(token)
    about = _about(registration.id, recipient, entry, registration.participant_type, links)
    about["check_in_code"] = domain.display_check_in_code(registration.check_in_code)
    position = decided.waitlist_position
    event: ev.IntegrationEvent = (
        ev.RegistrationConfirmed(**about)
        if decided.status == "confirmed"
        else ev.RegistrationWaitlisted(**about, waitlist_position=position)
    )
    if not await repo.store_confirmation(conn, registration.id, decided, now, stage_event(conn, event)):
        return await _current_state(conn, token_hash)  # a second click (or the expiry job) was first
    if decided.status == "confirmed":
        return {"id": registration.id, "status": "confirmed"}
    return {"id": registration.id, "status": "waitlisted", "waitlist_position": position}


async def cancel_registration(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    token: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    found = await repo.registration_with_locked_group(conn, token_hash)
    if found is None:
        if await revoked_link(conn, token):
            return dict(CANCELLED_ONLY)
        raise domain.NotFound(LINK_NOT_FOUND)
    _, group = found
    if await _link_expired(conn, catalog, group.id, now):
        raise domain.NotFound(LINK_NOT_FOUND)
    # Read again under the lock: the joined columns come from before the lock was granted.
    registration = await repo.registration_by_token_hash(conn, token_hash, for_update=True)
    if registration is None or registration.status == "expired":
        raise domain.NotFound(LINK_NOT_FOUND)
    if registration.status == "cancelled":
        return dict(CANCELLED_ONLY)
    group, seat_freed = domain.cancel(group, registration.status, registration.seat)
    await repo.mark_cancelled(conn, registration.id, now, hash_token(secrets.token_urlsafe(32)), token_hash)
    await repo.store_seat_counters(conn, group, now)
    entry = await catalog.entry(conn, group.id, group.catalog_version)
    links = Links(settings.public_url).for_token(token)
    # Cancelling with the mailed link proves the address, whatever the registration's state was.
    recipient = recipient_of(registration).model_copy(update={"address_proven": True})
    about = _about(registration.id, recipient, entry, registration.participant_type, links)
    await add_event(conn, outbox, ev.RegistrationCancelled(**about, previous_status=registration.status))
    if seat_freed:
        await promote_from_waitlist(conn, settings, catalog, group, now)
    return {"id": registration.id, "status": "cancelled"}


async def promote_from_waitlist(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    group: domain.GroupCounters,
    now: datetime,
) -> int:
    """Give free seats to the waitlist, in order. The caller holds the working group's lock."""
    waiting_rows = await repo.waitlist(conn, group.id)
    promoted, group = domain.promote(group, [domain.Waiting(r.id, r.participant_type) for r in waiting_rows])
    await repo.store_seat_counters(conn, group, now)
    if not promoted:
        return 0
    by_id = {r.id: r for r in waiting_rows}
    entry = await catalog.entry(conn, group.id, group.catalog_version)
    for waiting, seat in promoted:
        row = by_id[waiting.registration_id]
        await repo.mark_promoted(conn, row.id, seat, now)
        about = _about(row.id, recipient_of(row), entry, row.participant_type, Links.of(settings, row.id))
        about["check_in_code"] = domain.display_check_in_code(row.check_in_code)
        await add_event(conn, outbox, ev.RegistrationPromoted(**about))
    return len(promoted)


async def registration_status(
    conn: AsyncConnection, catalog: CatalogCache, token: str, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    registration = await repo.registration_by_token_hash(conn, hash_token(token))
    if registration is None and await revoked_link(conn, token):
        return dict(CANCELLED_ONLY)
    if registration is None or registration.status == "expired":
        raise domain.NotFound(LINK_NOT_FOUND)
    if registration.status == "cancelled":
        return dict(CANCELLED_ONLY)  # no personal data of a cancelled registration
    if await _link_expired(conn, catalog, registration.working_group_id, now):
        raise domain.NotFound(LINK_NOT_FOUND)
    view = await working_group_view(conn, registration.working_group_id)
    state = await registration_state(conn, registration)
    return {
        **state,
        "working_group": {"id": view["id"], "title": view["title"], "meetings": view["meetings"]},
        "name": registration.name,
        "email": registration.email,
        "language": registration.language,
        "participant_type": registration.participant_type,
        "created_at": registration.created_at,
        "confirmed_at": registration.confirmed_at,
        # Shown at the meeting's door (issue 24); only a confirmed registration is checked in.
        "check_in_code": (
            domain.display_check_in_code(registration.check_in_code)
            if registration.status == "confirmed"
            else None
        ),
    }


@dataclass(frozen=True)
class PageView:
    """What the pages behind a mailed link show (GET: nothing changes). ``state`` is "active",
    "cancelled" (a link revoked by cancelling: nothing personal) or "not_found"; for an active link
    the registration's status, waitlist position, working group and meetings, and the name the person
    registered with (to recognise the registration; nothing else personal)."""

    state: str
    language: str = "de"
    registration_id: uuid.UUID | None = None
    status: str = ""
    waitlist_position: int | None = None
    name: str = ""
    working_group_title: str = ""
    meetings: tuple[ev.MeetingInfo, ...] = ()
    check_in_code: str = ""


async def page_view(
    conn: AsyncConnection, catalog: CatalogCache, token: str, now: datetime | None = None
) -> PageView:
    found = await repo.registration_by_token_hash(conn, hash_token(token))
    if found is None:
        revoked = await repo.registration_by_revoked_token_hash(conn, hash_token(token))
        if revoked is not None:
            return PageView("cancelled", revoked.language or "de")
        return PageView("not_found")
    if found.status == "expired":
        return PageView("not_found", found.language)
    entry = await catalog.get(conn, found.working_group_id)
    if entry is None or domain.links_expired(entry[1], now or datetime.now(UTC)):
        return PageView("not_found", found.language)
    if found.status == "cancelled":
        return PageView("cancelled", found.language)
    state = await registration_state(conn, found)
    wg, meetings = entry
    return PageView(
        "active",
        found.language,
        found.id,
        found.status,
        state.get("waitlist_position"),
        found.name or "",
        wg.title,
        tuple(meetings),
        domain.display_check_in_code(found.check_in_code),
    )


async def calendar_of(conn: AsyncConnection, catalog: CatalogCache, token: str) -> bytes:
    """The calendar file of a confirmed registration's meetings (the same entries as its mails carry), in
    the registration's language."""
    view = await page_view(conn, catalog, token)
    if view.state != "active" or view.status != "confirmed" or view.registration_id is None:
        raise domain.NotFound(LINK_NOT_FOUND)
    data = build_calendar(
        str(view.registration_id),
        view.working_group_title,
        [m.model_dump(mode="json") for m in view.meetings],
        language=view.language,
    )
    if data is None:
        raise domain.NotFound("The meetings have no dates yet.")
    return data


async def stop_reminders(conn: AsyncConnection, token: str, now: datetime | None = None) -> dict[str, Any]:
    """The one-click unsubscribe of a reminder (RFC 8058): no further reminders for the registration. Other
    mails about it (confirmations, calendar updates) still go. Unknown link: NotFound."""
    if not await repo.stop_reminders(conn, hash_token(token), now or datetime.now(UTC)):
        raise domain.NotFound(LINK_NOT_FOUND)
    return {"reminders": False}


# --- mail that never arrived -------------------------------------------------------------------------------


async def record_mail_bounced(conn: AsyncConnection, registration_id: uuid.UUID, at: datetime) -> None:
    """The registration's address no longer takes mail (the notification service suppressed it); staff see
    "bounced" on the participant list."""
    await repo.mark_mail_bounced(conn, registration_id, at)


# --- periodic jobs ----------------------------------------------------------------------------------------------


async def expire_unconfirmed(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    now: datetime | None = None,
    batch: int = 200,
) -> int:
    """Expire registrations not confirmed in time, tell the person, and delete their personal data."""
    now = now or datetime.now(UTC)
    rows = await repo.claim_expired(conn, now, batch)
    for row in rows:
        domain.transition(row.status, "expire")
        entry = await catalog.entry(conn, row.working_group_id)
        await add_event(
            conn,
            outbox,
            ev.RegistrationExpired(**_about(row.id, recipient_of(row), entry, row.participant_type)),
        )
        await repo.mark_expired(conn, row.id, now)
    return len(rows)


async def audit(
    conn: AsyncConnection, subject: str, action: str, target: str, details: dict[str, Any]
) -> None:
    await audit_log_record(conn, audit_log, subject, action, target, details)


async def forget_idempotency_keys(conn: AsyncConnection, settings: RegistrationSettings) -> None:
    """Idempotency keys count for ``idempotency_ttl_hours`` (24 h): the same key later is a new request."""
    await forget_keys(conn, idempotency_keys, settings.idempotency_ttl_hours)
