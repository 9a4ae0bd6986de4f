"""Privacy use cases of the registration service: erasure on request (Art. 17) and retention.

Erasure is event-driven. The registration service is the public door: it proves the address by a mailed
link (or an admin starts it for a request by letter), publishes ``privacy.erasure_requested``, follows
each service's ``privacy.erasure_completed`` and, when all have answered, forgets the address itself and
publishes ``privacy.erasure_finished`` (the notification service then sends the last mail).

Like every use case, these run inside the caller's unit of work and never commit; their queries are
in ``privacy_repository``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain, service
from services.registration import meetings as after_meetings
from services.registration import privacy_repository as repo
from services.registration import repository as registrations
from services.registration.catalog import CatalogCache
from services.registration.config import RegistrationSettings
from services.registration.models import outbox
from shared import events as ev
from shared.addresses import mailbox, normalised
from shared.observability import ERASURE_OLDEST_UNFINISHED_AGE
from shared.outbox import add_event
from shared.tokens import hash_token

LINK_NOT_FOUND = "This link is unknown or has expired."
NO_SUCH_REQUEST = "There is no such request, or the link does not belong to it."


def email_hash(settings: RegistrationSettings, email: str) -> str:
    """A keyed hash of the address: matches repeated requests without keeping the address."""
    key = ("erasure:" + settings.token_secret).encode()
    return hmac.new(key, normalised(email).encode(), hashlib.sha256).hexdigest()


def mailbox_hash(settings: RegistrationSettings, email: str) -> str:
    """A keyed hash of the address's mailbox (``shared.addresses.mailbox``): what the per-mailbox budget
    of erasure mails counts, so that victim+1@… and victim+2@… share one."""
    key = ("erasure-mailbox:" + settings.token_secret).encode()
    return hmac.new(key, mailbox(email).encode(), hashlib.sha256).hexdigest()


# --- the public door --------------------------------------------------------------------------------------


async def request_erasure(
    conn: AsyncConnection,
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
    await repo.lock_mailbox_requests(conn, inbox)
    # The mailbox's budget first (victim+1@, victim+2@ … are one inbox): beyond it, answer alike and send
    # nothing.
    per_day = settings.erasure_mails_per_mailbox_per_day
    if per_day > 0 and not domain.budget_open(
        await repo.self_requests_since(conn, now - timedelta(days=1), mailbox_hash=inbox), per_day
    ):
        return
    interval = timedelta(hours=settings.public_mail_interval_hours)
    if await repo.self_requests_since(conn, now - interval, email_hash=hashed):
        return  # mailed recently: answer alike, send nothing
    per_hour = settings.erasure_mails_per_hour
    if per_hour > 0 and not domain.budget_open(
        await repo.self_requests_since(conn, now - timedelta(hours=1)), per_hour
    ):
        raise domain.mails_paused()
    token = secrets.token_urlsafe(32)
    await repo.insert_request(
        conn,
        {
            "id": uuid.uuid4(),
            "email": email.strip(),
            "email_hash": hashed,
            "mailbox_hash": inbox,
            "language": language,
            "origin": "self",
            "status": "pending_verification",
            "token_hash": hash_token(token),
            "created_at": now,
            "expires_at": now + timedelta(hours=settings.erasure_link_hours),
        },
    )
    await add_event(
        conn,
        outbox,
        ev.PrivacyErasureRequestSubmitted(
            recipient=ev.Recipient(email=email.strip(), name="", language=language),  # type: ignore[arg-type]
            confirm_url=f"{settings.public_url}/v1/privacy/erasure-requests/confirm?token={token}",
            valid_hours=round(settings.erasure_link_hours),
        ),
    )


async def pending_request_language(conn: AsyncConnection, token: str) -> str | None:
    """The language of the request behind a link (for its page); None when the link is unknown."""
    return await repo.request_language(conn, hash_token(token))


async def confirm_erasure(conn: AsyncConnection, token: str, now: datetime | None = None) -> dict[str, Any]:
    """The link was followed and the button pressed: start the erasure. A second press answers with the
    current state."""
    now = now or datetime.now(UTC)
    row = await repo.request_by_token(conn, hash_token(token))
    if row is None:
        raise domain.NotFound(LINK_NOT_FOUND)
    confirmable = domain.erasure_confirmable(row.status, row.expires_at, now)
    if confirmable is None:
        raise domain.NotFound(LINK_NOT_FOUND)
    if not confirmable:
        return {"request_id": row.id, "status": row.status}
    await _start(conn, row.id, row.email, row.language, now)
    return {"request_id": row.id, "status": "erasing"}


async def start_erasure_by_admin(
    conn: AsyncConnection, settings: RegistrationSettings, email: str, now: datetime | None = None
) -> uuid.UUID:
    """A request that came by letter: the office has checked who asked, so no link is needed."""
    now = now or datetime.now(UTC)
    request_id = uuid.uuid4()
    await repo.insert_request(
        conn,
        {
            "id": request_id,
            "email": email.strip(),
            "email_hash": email_hash(settings, email),
            "language": "de",
            "origin": "admin",
            "status": "pending_verification",
            "created_at": now,
        },
    )
    await _start(conn, request_id, email.strip(), "de", now)
    return request_id


async def _start(
    conn: AsyncConnection, request_id: uuid.UUID, email: str, language: str, now: datetime
) -> None:
    await repo.update_request(conn, request_id, {"status": "erasing", "verified_at": now, "expires_at": None})
    await add_event(
        conn,
        outbox,
        ev.PrivacyErasureRequested(request_id=request_id, email=email, language=language),  # type: ignore[arg-type]
    )


async def erasure_state(conn: AsyncConnection, request_id: uuid.UUID, token: str | None) -> dict[str, Any]:
    """The state of a request: with the mailed link's token (residents) or ``token=None`` (admins)."""
    token_hash = hash_token(token) if token is not None else None
    row = await repo.request(conn, request_id, token_hash=token_hash)
    if row is None:
        raise domain.NotFound(NO_SUCH_REQUEST)
    answers = row.answers or {}
    return {
        "request_id": row.id,
        "status": row.status,
        "services": {name: ("completed" if name in answers else "pending") for name in ev.ERASURE_SERVICES},
    }


# --- following the services' answers ------------------------------------------------------------------------


async def record_answer(conn: AsyncConnection, answer: ev.PrivacyErasureCompleted) -> None:
    """One service erased its part. When all have answered: forget the address here too and publish
    ``privacy.erasure_finished`` (the last mail)."""
    row = await repo.request(conn, answer.request_id, for_update=True)
    if row is None or row.status != "erasing":
        return  # unknown, or finished already: a late or repeated answer changes nothing
    answers = {**(row.answers or {}), answer.service: answer.records_erased}
    done = domain.erasure_complete(answers, ev.ERASURE_SERVICES)
    values: dict[str, Any] = {"answers": answers}
    if done:
        if await repo.unpublished_events_mention(conn, row.email):
            # An event carrying the address still waits for the relay: try again after the retry delay.
            raise RuntimeError("events mentioning the address are not yet published")
        await repo.forget_published_events(conn, row.email)
        values.update(status="completed", email=None, completed_at=datetime.now(UTC))
    await repo.update_request(conn, row.id, values)
    if done:
        await add_event(conn, outbox, ev.PrivacyErasureFinished(request_id=row.id))


# --- this service's own part --------------------------------------------------------------------------------


async def erase_address(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    email: str,
    now: datetime | None = None,
) -> int:
    """Erase what the registration service holds about ``email`` (any letter case): active registrations
    are cancelled (seats freed, the waitlist promoted) and every registration loses its personal data;
    idempotency keys and published events carrying the address go. Returns the records erased."""
    now = now or datetime.now(UTC)
    # Group by group under the group's lock (lock order: group, then registration).
    for wg_id in await repo.working_groups_with_active_registrations(conn, email):
        await _cancel_active(conn, settings, catalog, wg_id, email, now)
    erased_ids = await repo.erase_registrations(conn, email, now)
    erased = len(erased_ids)
    # Attendance is personal data too: it goes with the registration (the meeting's counts stay).
    erased += await after_meetings.forget_attendance(conn, erased_ids)
    erased += await repo.forget_idempotency_keys(conn, email)
    # (An unpublished event must still go out: it is dropped when the request completes.)
    erased += await repo.forget_published_events(conn, email)
    return erased


async def _cancel_active(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    wg_id: str,
    email: str,
    now: datetime,
) -> None:
    wg = await registrations.lock_working_group(conn, wg_id)
    if wg is None:
        return
    group = registrations.group_counters(wg)
    freed = False
    for row in await repo.active_registrations_locked(conn, email, wg_id):
        group, seat_freed = domain.cancel(group, row.status, row.seat)
        freed = freed or seat_freed
        # No mail: the person asked to be forgotten, and gets one last mail when all is erased.
        await registrations.mark_cancelled(conn, row.id, now)
    await registrations.store_seat_counters(conn, group, now)
    if freed:
        await service.promote_from_waitlist(conn, settings, catalog, group, now)


# --- retention ------------------------------------------------------------------------------------------------


async def anonymise_after_last_meeting(
    conn: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
) -> int:
    """Registrations lose their personal data ``retention_after_last_meeting_days`` after their working
    group's last meeting."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.retention_after_last_meeting_days)
    ids = await repo.anonymise_ended_before(conn, cutoff, now)
    await after_meetings.forget_attendance(conn, ids)  # the entries go with it; the counts stay
    return len(ids)


async def forget_cancelled(
    conn: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
) -> int:
    """Cancelled registrations lose their personal data ``cancelled_retention_days`` after cancelling."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.cancelled_retention_days)
    ids = await repo.anonymise_cancelled_before(conn, cutoff, now)
    await after_meetings.forget_attendance(conn, ids)  # the entries go with it; the counts stay
    return len(ids)


async def forget_unconfirmed_erasure_requests(conn: AsyncConnection, now: datetime | None = None) -> int:
    """Erasure requests whose link expired unused are deleted, address and all."""
    return await repo.forget_unconfirmed_requests(conn, now or datetime.now(UTC))


async def measure_unfinished_erasures(conn: AsyncConnection, now: datetime | None = None) -> float:
    """Seconds since the oldest erasure under way was started; 0 when none is. Exported as a gauge: an
    erasure must be done within a day (the alert)."""
    started = await repo.oldest_unfinished_start(conn)
    age = max(0.0, ((now or datetime.now(UTC)) - started).total_seconds()) if started else 0.0
    ERASURE_OLDEST_UNFINISHED_AGE.set(age)
    return age
