"""Use cases of the registration service: load, apply the rule from ``domain``, store through
``repository``, add the outbox event. Each runs inside the caller's unit of work and never commits;
refusals are ``domain`` errors (``api.py`` maps them to problem+json)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.registration import domain
from services.registration import repository as repo
from services.registration.catalog_seed import WORKING_GROUPS
from services.registration.config import RegistrationSettings
from services.registration.models import audit_log, idempotency_keys, outbox
from services.registration.schemas import RegistrationRequest
from shared import events as ev
from shared.addresses import mailbox
from shared.audit import record as audit_log_record
from shared.calendar import build_calendar
from shared.i18n import BERLIN
from shared.idempotency import forget_keys
from shared.inbox import EventMeta
from shared.observability import CONFIRMATION_BATCH
from shared.outbox import add_event, staged_row
from shared.tokens import hash_token, token_for

# What a link revoked by cancelling answers: that it was cancelled, nothing more.
CANCELLED_ONLY: dict[str, Any] = {"status": "cancelled"}
LINK_NOT_FOUND = "This link is unknown or has expired."
NO_WORKING_GROUP = "There is no working group with this id."


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


# --- the catalog -------------------------------------------------------------------------------------------


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


CatalogEntry = tuple[ev.WorkingGroupInfo, list[ev.MeetingInfo]]


class CatalogCache:
    """Working group titles and meetings for events, one per runtime (``RegistrationRuntime.catalog``).

    Every registration and confirmation puts them into its event; reading them each time cost two queries
    per request. Where the working group's row is read under its lock (confirming, cancelling, promoting)
    the caller passes its ``catalog_version``, raised by every meeting change, and a stale entry is read
    again: those mails always carry the current meetings. Elsewhere (the confirm-your-registration mail)
    an entry is trusted for ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, int, CatalogEntry]] = {}

    async def get(self, conn: AsyncConnection, wg_id: str, version: int | None = None) -> CatalogEntry | None:
        hit = self._entries.get(wg_id)
        if hit is not None:
            loaded_at, loaded_version, entry = hit
            if version is None and time.monotonic() - loaded_at < self.ttl:
                return entry
            if version is not None and loaded_version == version:
                return entry
        wg = await repo.get_working_group(conn, wg_id)
        if wg is None:
            return None
        rows = (await repo.meetings_of(conn, [wg_id]))[wg_id]
        entry = (ev.WorkingGroupInfo(id=wg.id, title=wg.title), [meeting_info(m) for m in rows])
        self._entries[wg_id] = (time.monotonic(), wg.catalog_version, entry)
        return entry

    async def entry(self, conn: AsyncConnection, wg_id: str, version: int | None = None) -> CatalogEntry:
        found = await self.get(conn, wg_id, version)
        assert found is not None, f"working group {wg_id} vanished"
        return found

    def invalidate(self, wg_id: str) -> None:
        self._entries.pop(wg_id, None)


async def seed_catalog(conn: AsyncConnection, settings: RegistrationSettings) -> bool:
    """On first start, create the working groups of the announcement and publish them. Idempotent."""
    await repo.lock_catalog_seed(conn)
    if await repo.count_working_groups(conn) > 0:
        return False
    for position, wg in enumerate(WORKING_GROUPS, start=1):
        await repo.insert_working_group(
            conn,
            {
                "id": wg.id,
                "title": wg.title,
                "position": position,
                "capacity": settings.default_capacity,
                "expert_reserved": settings.default_expert_reserved,
            },
            [
                {
                    "working_group_id": wg.id,
                    "number": 1,
                    "starts_at": wg.first.starts_at,
                    "venue": wg.first.venue,
                    "address": wg.first.address,
                },
                {"working_group_id": wg.id, "number": 2, "starts_at": None, "venue": "", "address": ""},
            ],
        )
    for wg_row in await repo.list_working_groups(conn):
        await publish_working_group(conn, wg_row.id, changed=False)
    return True


async def publish_working_group(conn: AsyncConnection, working_group_id: str, *, changed: bool) -> None:
    wg = await repo.get_working_group(conn, working_group_id)
    assert wg is not None
    rows = (await repo.meetings_of(conn, [wg.id]))[wg.id]
    cls = ev.WorkingGroupChanged if changed else ev.WorkingGroupPublished
    await add_event(
        conn,
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


async def working_group_views(conn: AsyncConnection, ids: list[str] | None = None) -> list[dict[str, Any]]:
    groups = await repo.list_working_groups(conn)
    if ids is not None:
        groups = [g for g in groups if g.id in ids]
    all_meetings = await repo.meetings_of(conn, [g.id for g in groups])
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


async def working_group_view(conn: AsyncConnection, wg_id: str) -> dict[str, Any]:
    views = await working_group_views(conn, [wg_id])
    if not views:
        raise domain.NotFound(NO_WORKING_GROUP)
    return views[0]


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
    budget_open, mailbox_open, inserted = await repo.submit_registration(
        conn,
        {
            "id": registration_id,
            "working_group_id": request.working_group_id,
            "status": "pending_confirmation",
            "name": request.name,
            "email": str(request.email),
            "email_key": email_key,
            "mailbox_key": mailbox(str(request.email)),
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
        staged_row(conn, event),
        settings.opt_in_mails_per_hour,
        now - timedelta(hours=1),
        settings.opt_in_mails_per_mailbox_per_day,
        now - timedelta(days=1),
    )
    if not mailbox_open:
        # This inbox had its opt-in mails for the day (victim+1@, victim+2@ … count as one): answer alike,
        # store and send nothing.
        return uuid.uuid4()
    if not budget_open:
        raise _opt_in_paused()
    if not inserted:
        await _tell_existing_status(conn, settings, catalog, request.working_group_id, email_key, now)
        return uuid.uuid4()
    return registration_id


def _opt_in_paused() -> domain.OptInMailsPaused:
    """All opt-in mails together stay under ``opt_in_mails_per_hour`` (approximately: concurrent requests
    may each see the last free place)."""
    return domain.OptInMailsPaused(
        "Registrations are paused for a short while. Please try again later.", retry_after=600
    )


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


class SeatDecisions:
    """Confirmations of one working group decided together: group commit for the seat decision.

    Every confirmation of a working group queues behind the group's row lock, and each held it through its
    commit and the hand-over to the next waiting database backend; on a busy machine that hand-over set the
    pace. Here the first confirmation of a working group decides at once, on its own connection; those
    that arrive meanwhile wait, and when it is done the first of them decides all that wait (up to
    ``max_batch``, in the order they came) in one statement: one lock, one commit. Nobody waits for more
    than the batch under way and its own. One per runtime (``RegistrationRuntime.seat_decisions``);
    replicas each batch their own, and the database's lock still orders them.
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self._waiting: dict[str, list[_Waiting]] = {}
        self._deciding: set[str] = set()  # working groups with a batch under way (their queue may be empty)

    async def decide(self, conn: AsyncConnection, wg_id: str, confirmation: repo.Confirmation) -> Any:
        """What ``repository.decide_confirmations`` answers for ``confirmation``, decided on ``conn`` (if this
        call leads a batch) or on the connection of the call that leads it."""
        while True:
            waiting = _Waiting(confirmation, asyncio.get_running_loop().create_future())
            queue = self._waiting.setdefault(wg_id, [])
            queue.append(waiting)
            if wg_id in self._deciding:
                try:
                    answer = await waiting.future
                except asyncio.CancelledError:
                    self._withdraw(wg_id, waiting)
                    raise
                if answer is _INTERRUPTED:
                    continue  # the leader was cancelled mid-batch: decide again (no longer pending if it did)
                if answer is not _LEAD:
                    return answer
            else:
                self._deciding.add(wg_id)
            return await self._lead(conn, wg_id, waiting)

    async def _lead(self, conn: AsyncConnection, wg_id: str, leader: _Waiting) -> Any:
        queue = self._waiting[wg_id]
        taken, queue[: self.max_batch] = queue[: self.max_batch], []
        # Not those whose caller was cancelled while waiting (their future is done, they are withdrawing).
        batch = [waiting for waiting in taken if waiting is leader or not waiting.future.done()]
        CONFIRMATION_BATCH.observe(len(batch))
        others = [waiting.future for waiting in batch if waiting is not leader]
        try:
            decided = await repo.decide_confirmations(conn, wg_id, [w.confirmation for w in batch])
        except asyncio.CancelledError:
            _settle(others, result=_INTERRUPTED)
            raise
        except BaseException as exc:
            _settle(others, exception=exc)
            raise
        finally:
            self._hand_over(wg_id)
        for waiting, answer in zip(batch, decided, strict=True):
            if waiting is not leader and not waiting.future.done():  # done: its caller was cancelled
                waiting.future.set_result(answer)
        return decided[batch.index(leader)]

    def _hand_over(self, wg_id: str) -> None:
        """The batch is done: the first one still waiting leads the next, or the working group is idle."""
        queue = self._waiting.get(wg_id, [])
        while queue and queue[0].future.done():  # cancelled, not yet withdrawn
            queue.pop(0)
        if queue:
            queue[0].future.set_result(_LEAD)
        else:
            self._deciding.discard(wg_id)
            self._waiting.pop(wg_id, None)

    def _withdraw(self, wg_id: str, waiting: _Waiting) -> None:
        """A waiting call was cancelled: out of the queue; if it had just been made the leader, the next."""
        queue = self._waiting.get(wg_id, [])
        if waiting in queue:
            queue.remove(waiting)
        future = waiting.future
        if future.done() and not future.cancelled() and future.result() is _LEAD:
            self._hand_over(wg_id)


def _settle(
    futures: list[asyncio.Future[Any]], *, result: object = None, exception: BaseException | None = None
) -> None:
    """Settle every future alike; one already cancelled (its caller gone) is passed over."""
    for future in futures:
        if future.done():
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)


@dataclass(eq=False, slots=True)
class _Waiting:
    confirmation: repo.Confirmation
    future: asyncio.Future[Any]


# What a waiting confirmation may be told instead of its outcome: lead the next batch, or decide again.
_LEAD = object()
_INTERRUPTED = object()


async def confirm_registration(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    token: str,
    now: datetime | None = None,
    *,
    decisions: SeatDecisions | None = None,
) -> dict[str, Any]:
    """Double opt-in: a seat if one fits (first confirmed, first served), else the waitlist.

    The registration is read without a lock and both possible events are built; then the database decides
    the seat under the working group's lock (``repository.decide_confirmations``, the rules of
    ``domain.confirm``) and commits at once: every confirmation of the working group queues behind that
    lock, so it is held only inside the database. With ``decisions`` (the process's
    :class:`SeatDecisions`), confirmations of the same working group that arrive together are decided
    together, under one lock and in one commit.
    """
    now = now or datetime.now(UTC)
    token_hash = hash_token(token)
    for _ in range(5):
        registration = await repo.registration_for_confirmation(conn, token_hash)
        if registration is None:
            if await revoked_link(conn, token):
                return dict(CANCELLED_ONLY)
            raise domain.NotFound(LINK_NOT_FOUND)
        wg_id = registration["working_group_id"]
        if await _link_expired(conn, catalog, wg_id, now):
            raise domain.NotFound(LINK_NOT_FOUND)
        needed = domain.confirmation_needed(registration["status"], registration["expires_at"], now)
        if needed is None:
            raise domain.NotFound(LINK_NOT_FOUND)  # expired; the expiry job will tidy up
        if not needed:
            return await _current_state(conn, token_hash)
        recipient = ev.Recipient(
            email=registration["email"] or "",
            name=registration["name"] or "",
            language=registration["language"],
            address_proven=True,  # confirming with the mailed link proves it
        )
        about = _about(
            registration["id"],
            recipient,
            await catalog.entry(conn, wg_id, registration["catalog_version"]),
            registration["participant_type"],
            Links(settings.public_url).for_token(token),
        )
        about["check_in_code"] = domain.display_check_in_code(registration["check_in_code"])
        if conn.in_transaction():
            # What was read through SQLAlchemy (the catalog, when not cached) began a transaction; the
            # decision must commit on its own, at once, before anyone it was decided for gets an answer.
            await conn.commit()
        confirmed = staged_row(conn, ev.RegistrationConfirmed(**about))
        # A waitlisted event carries the same fields and the place, which the database fills in.
        event_id, _, _, payload, correlation_id = confirmed
        waitlisted = (
            event_id,
            ev.RegistrationWaitlisted.event_type,
            ev.RegistrationWaitlisted.version,
            payload,
            correlation_id,
        )
        confirmation = repo.Confirmation(
            registration["id"], registration["catalog_version"], now, confirmed, waitlisted
        )
        if decisions is None:
            decided = (await repo.decide_confirmations(conn, wg_id, [confirmation]))[0]
        else:
            decided = await decisions.decide(conn, wg_id, confirmation)
        if decided is None:
            return await _current_state(conn, token_hash)  # a second click (or the expiry job) was first
        if decided["outcome"] == "confirmed":
            return {"id": registration["id"], "status": "confirmed"}
        if decided["outcome"] == "waitlisted":
            return {
                "id": registration["id"],
                "status": "waitlisted",
                "waitlist_position": decided["waitlist_position"],
            }
        # "stale": the meetings changed meanwhile; the mail must show the new ones.
    raise RuntimeError("the working group's meetings kept changing while confirming")


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
        await _promote_from_waitlist(conn, settings, catalog, group, now)
    return {"id": registration.id, "status": "cancelled"}


async def _promote_from_waitlist(
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


async def record_mail_bounced(conn: AsyncConnection, event: ev.IntegrationEvent, meta: EventMeta) -> None:
    """``mail.bounced``: the registration's address no longer takes mail (the notification service suppressed
    it); staff see "bounced" on the participant list. A mail about no registration changes nothing here."""
    assert isinstance(event, ev.MailBounced)
    if event.registration_id is not None:
        await repo.mark_mail_bounced(conn, event.registration_id, meta.occurred_at or datetime.now(UTC))


# --- staff: participants and planning ----------------------------------------------------------------------


async def participant_list(
    conn: AsyncConnection, wg_id: str, reader: str, fields: Sequence[str], format: str
) -> list[dict[str, Any]]:
    """Confirmed participants, then the waitlist in order (numbered); the read is audited."""
    if await repo.get_working_group(conn, wg_id) is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    rows = await repo.participants(conn, wg_id)
    # Reading personal data is a staff action too: it goes into the audit log.
    await audit(conn, reader, "participants.read", wg_id, {"format": format})
    people = []
    position = 0
    for row in rows:
        person = {field: getattr(row, field, None) for field in fields if field != "waitlist_position"}
        if row.status == "waitlisted":
            position += 1
            person["waitlist_position"] = position
        people.append(person)
    return people


def _tally(values: Any) -> dict[str, int]:
    result: dict[str, int] = {}
    for value in values:
        result[value] = result.get(value, 0) + 1
    return dict(sorted(result.items()))


async def planning_figures(conn: AsyncConnection, wg_id: str, reader: str) -> dict[str, Any]:
    """Planning figures per meeting: confirmed and waitlisted counts by type, district, language,
    interpretation language and accessibility needs (a registration covers both meetings)."""
    view = await working_group_view(conn, wg_id)
    rows = await repo.participants(conn, wg_id)
    # The figures include accessibility needs (health data, Art. 9 GDPR): the read is audited.
    await audit(conn, reader, "planning.read", wg_id, {})
    figures: dict[str, dict[str, dict[str, int]]] = {}
    for status in ("confirmed", "waitlisted"):
        group = [r for r in rows if r.status == status]
        figures[status] = {
            "total": {"all": len(group)},
            "participant_type": _tally(r.participant_type for r in group),
            "district": _tally(r.district or "unknown" for r in group),
            "language": _tally(r.language for r in group),
            "interpretation_language": _tally(
                r.interpretation_language for r in group if r.interpretation_language
            ),
            "accessibility_needs": {"with_needs": sum(1 for r in group if r.accessibility_needs)},
        }
    return {
        "working_group": {"id": view["id"], "title": view["title"], "capacity": view["capacity"]},
        "meetings": [
            {**meeting, "figures": figures if not meeting["cancelled"] else None}
            for meeting in view["meetings"]
        ],
        "accessibility_needs": [
            r.accessibility_needs for r in rows if r.status == "confirmed" and r.accessibility_needs
        ],
    }


# --- staff: capacity and meetings --------------------------------------------------------------------------


async def change_working_group(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    wg_id: str,
    *,
    capacity: int | None,
    expert_reserved: int | None,
    now: datetime | None = None,
) -> int:
    """Change capacity or the expert reservation; more room promotes from the waitlist. Returns promotions."""
    now = now or datetime.now(UTC)
    wg = await repo.lock_working_group(conn, wg_id)
    if wg is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    new_capacity = wg.capacity if capacity is None else capacity
    new_reserved = wg.expert_reserved if expert_reserved is None else expert_reserved
    domain.check_capacity(new_capacity, new_reserved)
    await repo.update_capacity(conn, wg_id, new_capacity, new_reserved, now)
    group = replace(repo.group_counters(wg), capacity=new_capacity, expert_reserved=new_reserved)
    promoted = await _promote_from_waitlist(conn, settings, catalog, group, now)
    await publish_working_group(conn, wg_id, changed=True)
    catalog.invalidate(wg_id)
    return promoted


async def change_meeting(
    conn: AsyncConnection,
    settings: RegistrationSettings,
    catalog: CatalogCache,
    wg_id: str,
    number: int,
    changes: dict[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Change a meeting's date, venue or address, or cancel it; every confirmed participant is told."""
    now = now or datetime.now(UTC)
    wg = await repo.lock_working_group(conn, wg_id)
    if wg is None:
        raise domain.NotFound(NO_WORKING_GROUP)
    before = await repo.meeting(conn, wg_id, number, for_update=True)
    if before is None:
        raise domain.NotFound("There is no meeting with this number.")
    values = {k: v for k, v in changes.items() if v is not None or k in ("starts_at", "ends_at")}
    domain.check_meeting_times(
        values.get("starts_at", before.starts_at), values.get("ends_at", before.ends_at)
    )
    if not values:
        return {"number": before.number}
    await repo.update_meeting(conn, wg_id, number, values, before.sequence + 1, now)
    after = await repo.meeting(conn, wg_id, number)
    assert after is not None
    participants = await _confirmed_participants(conn, settings, wg_id)
    info = ev.WorkingGroupInfo(id=wg.id, title=wg.title)
    if after.cancelled and not before.cancelled:
        await add_event(
            conn,
            outbox,
            ev.MeetingCancelled(working_group=info, meeting=meeting_info(after), participants=participants),
        )
    elif not after.cancelled:
        await add_event(
            conn,
            outbox,
            ev.MeetingRescheduled(
                working_group=info,
                meeting=meeting_info(after),
                previous=meeting_info(before),
                participants=participants,
            ),
        )
    await publish_working_group(conn, wg_id, changed=True)
    catalog.invalidate(wg_id)
    return {"number": after.number}


async def _confirmed_participants(
    conn: AsyncConnection, settings: RegistrationSettings, wg_id: str, *, reminder: bool = False
) -> list[ev.Participant]:
    """Confirmed participants, each with their self-service links. For a reminder: only those who did not
    stop reminders, each with the one-click unsubscribe link (RFC 8058) that stops them."""
    participants = []
    for row in await repo.confirmed_registrations(conn, wg_id):
        links = Links.of(settings, row.id)
        if reminder:
            if row.reminders_stopped_at is not None:
                continue
            token = token_for(settings.token_secret, row.id)
            links = links.model_copy(
                update={
                    "unsubscribe_url": f"{settings.public_url}/v1/registrations/unsubscribe?token={token}"
                }
            )
        participants.append(ev.Participant(registration_id=row.id, recipient=recipient_of(row), links=links))
    return participants


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


async def send_due_reminders(
    conn: AsyncConnection, settings: RegistrationSettings, now: datetime | None = None
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
    for candidate in await repo.meetings_due_for_reminder(conn, now, lead):
        wg = await repo.lock_working_group(conn, candidate.working_group_id)
        meeting_row = await repo.claim_reminder(conn, candidate.working_group_id, candidate.number, now, lead)
        if wg is None or meeting_row is None:
            continue
        sent += 1
        participants = await _confirmed_participants(conn, settings, wg.id, reminder=True)
        if participants:
            await add_event(
                conn,
                outbox,
                ev.MeetingReminderDue(
                    working_group=ev.WorkingGroupInfo(id=wg.id, title=wg.title),
                    meeting=meeting_info(meeting_row),
                    participants=participants,
                ),
            )
    return sent


async def audit(
    conn: AsyncConnection, subject: str, action: str, target: str, details: dict[str, Any]
) -> None:
    await audit_log_record(conn, audit_log, subject, action, target, details)


async def forget_idempotency_keys(conn: AsyncConnection, settings: RegistrationSettings) -> None:
    """Idempotency keys count for ``idempotency_ttl_hours`` (24 h): the same key later is a new request."""
    await forget_keys(conn, idempotency_keys, settings.idempotency_ttl_hours)
