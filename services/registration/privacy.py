"""Privacy use cases of the registration service: erasure on request (Art. 17) and retention.

Erasure is event-driven. The registration service is the public door: it proves the address by a mailed
link (or an admin starts it for a request by letter), publishes ``privacy.erasure_requested``, follows
each service's ``privacy.erasure_completed`` and, when all have answered, forgets the address itself and
publishes ``privacy.erasure_finished`` (the notification service then sends the last mail).

Like every use case, these run inside the caller's unit of work and never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain, service
from services.registration import meetings as after_meetings
from services.registration import repository as repo
from services.registration.config import RegistrationSettings
from services.registration.models import (
    PERSONAL_DATA_COLUMNS,
    erasure_requests,
    idempotency_keys,
    meetings,
    outbox,
    registrations,
)
from shared import events as ev
from shared.addresses import mailbox, normalised, sql_equals_address, sql_json_holds_address
from shared.http import Problem
from shared.inbox import EventMeta
from shared.observability import ERASURE_OLDEST_UNFINISHED_AGE
from shared.outbox import add_event

ACTIVE = repo.ACTIVE_STATUSES


def email_hash(settings: RegistrationSettings, email: str) -> str:
    """A keyed hash of the address: matches repeated requests without keeping the address."""
    key = ("erasure:" + settings.token_secret).encode()
    return hmac.new(key, normalised(email).encode(), hashlib.sha256).hexdigest()


def mailbox_hash(settings: RegistrationSettings, email: str) -> str:
    """A keyed hash of the address's mailbox (``shared.addresses.mailbox``): what the per-mailbox budget
    of erasure mails counts, so that victim+1@… and victim+2@… share one."""
    key = ("erasure-mailbox:" + settings.token_secret).encode()
    return hmac.new(key, mailbox(email).encode(), hashlib.sha256).hexdigest()


def _not_found() -> Problem:
    return Problem(404, "Not found", "This link is unknown or has expired.")


# --- the public door --------------------------------------------------------------------------------------


async def request_erasure(
    session: AsyncConnection,
    settings: RegistrationSettings,
    email: str,
    language: str,
    now: datetime | None = None,
) -> None:
    """Someone asks for the erasure of ``email``: mail a verification link, unless this address got one
    within ``public_mail_interval_hours``. Answers alike for known and unknown addresses."""
    now = now or datetime.now(UTC)
    hashed = email_hash(settings, email)
    inbox = mailbox_hash(settings, email)
    # Two requests for one mailbox at once: the second waits here and then finds the first.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": "erasure:" + inbox})
    if settings.erasure_mails_per_mailbox_per_day > 0:
        # The mailbox's budget first (victim+1@, victim+2@ … are one inbox): beyond it, answer alike and
        # send nothing.
        to_mailbox = await session.scalar(
            select(func.count())
            .select_from(erasure_requests)
            .where(erasure_requests.c.mailbox_hash == inbox)
            .where(erasure_requests.c.origin == "self")
            .where(erasure_requests.c.created_at > now - timedelta(days=1))
        )
        if (to_mailbox or 0) >= settings.erasure_mails_per_mailbox_per_day:
            return
    recent = await session.scalar(
        select(func.count())
        .select_from(erasure_requests)
        .where(erasure_requests.c.email_hash == hashed)
        .where(erasure_requests.c.origin == "self")
        .where(erasure_requests.c.created_at > now - timedelta(hours=settings.public_mail_interval_hours))
    )
    if recent:
        return  # mailed recently: answer alike, send nothing
    if settings.erasure_mails_per_hour > 0:
        last_hour = await session.scalar(
            select(func.count())
            .select_from(erasure_requests)
            .where(erasure_requests.c.origin == "self")
            .where(erasure_requests.c.created_at > now - timedelta(hours=1))
        )
        if (last_hour or 0) >= settings.erasure_mails_per_hour:
            raise Problem(
                429,
                "Too many requests",
                "Requests are paused for a short while. Please try again later.",
                headers={"Retry-After": "600"},
            )
    token = secrets.token_urlsafe(32)
    await session.execute(
        erasure_requests.insert().values(
            id=uuid.uuid4(),
            email=email.strip(),
            email_hash=hashed,
            mailbox_hash=inbox,
            language=language,
            origin="self",
            status="pending_verification",
            token_hash=service.hash_token(token),
            created_at=now,
            expires_at=now + timedelta(hours=settings.erasure_link_hours),
        )
    )
    await add_event(
        session,
        outbox,
        ev.PrivacyErasureRequestSubmitted(
            recipient=ev.Recipient(email=email.strip(), name="", language=language),  # type: ignore[arg-type]
            confirm_url=f"{settings.public_url}/v1/privacy/erasure-requests/confirm?token={token}",
            valid_hours=round(settings.erasure_link_hours),
        ),
    )


async def pending_request_language(session: AsyncConnection, token: str) -> str | None:
    """The language of the request behind a link (for its page); None when the link is unknown."""
    return await session.scalar(
        select(erasure_requests.c.language).where(erasure_requests.c.token_hash == service.hash_token(token))
    )


async def confirm_erasure(
    session: AsyncConnection, token: str, now: datetime | None = None
) -> dict[str, Any]:
    """The link was followed and the button pressed: start the erasure. A second press answers with the
    current state."""
    now = now or datetime.now(UTC)
    row = (
        await session.execute(
            select(erasure_requests)
            .where(erasure_requests.c.token_hash == service.hash_token(token))
            .with_for_update()
        )
    ).first()
    if row is None:
        raise _not_found()
    if row.status != "pending_verification":
        return {"request_id": row.id, "status": row.status}
    if row.expires_at is not None and row.expires_at <= now:
        raise _not_found()
    await _start(session, row.id, row.email, row.language, now)
    return {"request_id": row.id, "status": "erasing"}


async def start_erasure_by_admin(
    session: AsyncConnection, settings: RegistrationSettings, email: str, now: datetime | None = None
) -> uuid.UUID:
    """A request that came by letter: the office has checked who asked, so no link is needed."""
    now = now or datetime.now(UTC)
    request_id = uuid.uuid4()
    await session.execute(
        erasure_requests.insert().values(
            id=request_id,
            email=email.strip(),
            email_hash=email_hash(settings, email),
            language="de",
            origin="admin",
            status="pending_verification",
            created_at=now,
        )
    )
    await _start(session, request_id, email.strip(), "de", now)
    return request_id


async def _start(
    session: AsyncConnection, request_id: uuid.UUID, email: str, language: str, now: datetime
) -> None:
    await session.execute(
        update(erasure_requests)
        .where(erasure_requests.c.id == request_id)
        .values(status="erasing", verified_at=now, expires_at=None)
    )
    await add_event(
        session,
        outbox,
        ev.PrivacyErasureRequested(request_id=request_id, email=email, language=language),  # type: ignore[arg-type]
    )


async def erasure_state(session: AsyncConnection, request_id: uuid.UUID, token: str | None) -> dict[str, Any]:
    """The state of a request: with the mailed link's token (residents) or ``token=None`` (admins)."""
    query = select(erasure_requests).where(erasure_requests.c.id == request_id)
    if token is not None:
        query = query.where(erasure_requests.c.token_hash == service.hash_token(token))
    row = (await session.execute(query)).first()
    if row is None:
        raise Problem(404, "Not found", "There is no such request, or the link does not belong to it.")
    answers = row.answers or {}
    return {
        "request_id": row.id,
        "status": row.status,
        "services": {name: ("completed" if name in answers else "pending") for name in ev.ERASURE_SERVICES},
    }


# --- following the services' answers ------------------------------------------------------------------------


async def record_answer(session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """``privacy.erasure_completed`` from one service. When all have answered: forget the address here
    too and publish ``privacy.erasure_finished`` (the last mail)."""
    assert isinstance(event, ev.PrivacyErasureCompleted)
    row = (
        await session.execute(
            select(erasure_requests).where(erasure_requests.c.id == event.request_id).with_for_update()
        )
    ).first()
    if row is None or row.status != "erasing":
        return  # unknown, or finished already: a late or repeated answer changes nothing
    answers = {**(row.answers or {}), event.service: event.records_erased}
    done = all(name in answers for name in ev.ERASURE_SERVICES)
    values: dict[str, Any] = {"answers": answers}
    if done:
        if await _unpublished_events_mention(session, row.email):
            # An event carrying the address still waits for the relay: try again after the retry delay.
            raise RuntimeError("events mentioning the address are not yet published")
        await _forget_published_events(session, row.email)
        values.update(status="completed", email=None, completed_at=datetime.now(UTC))
    await session.execute(update(erasure_requests).where(erasure_requests.c.id == row.id).values(**values))
    if done:
        await add_event(session, outbox, ev.PrivacyErasureFinished(request_id=row.id))


# --- this service's own part --------------------------------------------------------------------------------


def _mentions(document: Any, email: str) -> Any:
    """A JSON document (an event's payload, a remembered answer) holds the address as a value, exactly."""
    return sql_json_holds_address(document, normalised(email))


async def _unpublished_events_mention(session: AsyncConnection, email: str) -> bool:
    return bool(
        await session.scalar(
            select(exists().where(outbox.c.published_at.is_(None)).where(_mentions(outbox.c.payload, email)))
        )
    )


async def _forget_published_events(session: AsyncConnection, email: str) -> int:
    """Published events keep their payload until housekeeping; those carrying the address go now. (An
    unpublished one must still go out: it is dropped when the request completes.)"""
    result = await session.execute(
        delete(outbox)
        .where(outbox.c.published_at.is_not(None))
        .where(_mentions(outbox.c.payload, email))
        .returning(outbox.c.id)
    )
    return len(result.all())


async def erase_address(
    session: AsyncConnection,
    settings: RegistrationSettings,
    catalog: service.CatalogCache,
    email: str,
    now: datetime | None = None,
) -> int:
    """Erase what the registration service holds about ``email`` (any letter case): active registrations
    are cancelled (seats freed, the waitlist promoted) and every registration loses its personal data;
    idempotency keys and published events carrying the address go. Returns the records erased."""
    now = now or datetime.now(UTC)
    address = normalised(email)
    # The address as given (``email_key`` is for finding a person's registration in a group, and may count
    # more addresses as one).
    matches = sql_equals_address(registrations.c.email, address)
    found = (
        await session.execute(
            select(registrations.c.id, registrations.c.working_group_id, registrations.c.status).where(
                matches
            )
        )
    ).all()
    # Active registrations, group by group under the group's lock (lock order: group, then registration).
    for wg_id in sorted({r.working_group_id for r in found if r.status in ACTIVE}):
        await _cancel_active(session, settings, catalog, wg_id, matches, now)
    erased = await session.execute(
        update(registrations)
        .where(matches)
        .values(**dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
        .returning(registrations.c.id)
    )
    erased_ids = [row.id for row in erased.all()]
    count = len(erased_ids)
    # Attendance is personal data too: it goes with the registration (the meeting's counts stay).
    count += await after_meetings.forget_attendance(session, erased_ids)
    keys = await session.execute(
        delete(idempotency_keys)
        .where(
            or_(
                sql_equals_address(idempotency_keys.c.key, address),
                _mentions(idempotency_keys.c.response, address),
            )
        )
        .returning(idempotency_keys.c.key)
    )
    count += len(keys.all())
    count += await _forget_published_events(session, address)
    return count


async def _cancel_active(
    session: AsyncConnection,
    settings: RegistrationSettings,
    catalog: service.CatalogCache,
    wg_id: str,
    matches: Any,
    now: datetime,
) -> None:
    wg = await repo.lock_working_group(session, wg_id)
    if wg is None:
        return
    group = repo.group_counters(wg)
    rows = (
        await session.execute(
            select(registrations)
            .where(matches)
            .where(registrations.c.working_group_id == wg_id)
            .where(registrations.c.status.in_(ACTIVE))
            .with_for_update()
        )
    ).all()
    freed = False
    for row in rows:
        group, seat_freed = domain.cancel(group, row.status, row.seat)
        freed = freed or seat_freed
        # No mail: the person asked to be forgotten, and gets one last mail when all is erased.
        await session.execute(
            update(registrations)
            .where(registrations.c.id == row.id)
            .values(
                status="cancelled",
                seat=None,
                waitlist_seq=None,
                cancelled_at=now,
                expires_at=None,
                updated_at=now,
            )
        )
    await repo.store_seat_counters(session, group, now)
    if freed:
        await service._promote_from_waitlist(session, settings, catalog, group, now)


def erasure_handler(settings: RegistrationSettings, catalog: service.CatalogCache) -> Any:
    async def on_erasure_requested(
        session: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta
    ) -> None:
        assert isinstance(event, ev.PrivacyErasureRequested)
        erased = await erase_address(session, settings, catalog, event.email)
        await add_event(
            session,
            outbox,
            ev.PrivacyErasureCompleted(
                request_id=event.request_id, service="registration", records_erased=erased
            ),
        )

    return on_erasure_requested


# --- retention ------------------------------------------------------------------------------------------------


def _holds_personal_data() -> Any:
    return or_(*(registrations.c[name].is_not(None) for name in PERSONAL_DATA_COLUMNS))


async def anonymise_after_last_meeting(
    session: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
) -> int:
    """Registrations lose their personal data ``retention_after_last_meeting_days`` after their working
    group's last meeting (a group with a meeting still undated has no last meeting yet). One conditional
    UPDATE: a second replica running at the same time finds nothing left to do."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.retention_after_last_meeting_days)
    undated = (
        select(meetings.c.working_group_id)
        .where(meetings.c.working_group_id == registrations.c.working_group_id)
        .where(meetings.c.starts_at.is_(None))
    )
    last = (
        select(func.max(func.coalesce(meetings.c.ends_at, meetings.c.starts_at)))
        .where(meetings.c.working_group_id == registrations.c.working_group_id)
        .scalar_subquery()
    )
    result = await session.execute(
        update(registrations)
        .where(_holds_personal_data())
        .where(~exists(undated))
        .where(last < cutoff)
        .values(**dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
        .returning(registrations.c.id)
    )
    ids = [row.id for row in result.all()]
    await after_meetings.forget_attendance(session, ids)  # the entries go with it; the counts stay
    return len(ids)


async def forget_cancelled(
    session: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
) -> int:
    """Cancelled registrations lose their personal data ``cancelled_retention_days`` after cancelling."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.cancelled_retention_days)
    result = await session.execute(
        update(registrations)
        .where(registrations.c.status == "cancelled")
        .where(registrations.c.cancelled_at < cutoff)
        .where(_holds_personal_data())
        .values(**dict.fromkeys(PERSONAL_DATA_COLUMNS), updated_at=now)
        .returning(registrations.c.id)
    )
    ids = [row.id for row in result.all()]
    await after_meetings.forget_attendance(session, ids)  # the entries go with it; the counts stay
    return len(ids)


async def forget_unconfirmed_erasure_requests(session: AsyncConnection, now: datetime | None = None) -> int:
    """Erasure requests whose link expired unused are deleted, address and all."""
    now = now or datetime.now(UTC)
    result = await session.execute(
        delete(erasure_requests)
        .where(
            and_(
                erasure_requests.c.status == "pending_verification",
                erasure_requests.c.expires_at < now,
            )
        )
        .returning(erasure_requests.c.id)
    )
    return len(result.all())


async def measure_unfinished_erasures(session: AsyncConnection, now: datetime | None = None) -> float:
    """Seconds since the oldest erasure under way was started (verified, not yet answered by every
    service); 0 when none is. Exported as a gauge: an erasure must be done within a day (the alert)."""
    started = await session.scalar(
        select(func.min(func.coalesce(erasure_requests.c.verified_at, erasure_requests.c.created_at))).where(
            erasure_requests.c.status == "erasing"
        )
    )
    age = max(0.0, ((now or datetime.now(UTC)) - started).total_seconds()) if started else 0.0
    ERASURE_OLDEST_UNFINISHED_AGE.set(age)
    return age
