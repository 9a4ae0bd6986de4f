"""A registration's life and the seats, as plain Python: no I/O, driven by unit tests.

    pending_confirmation ──confirm, a seat fits──▶ confirmed ──cancel──▶ cancelled
            │          └──confirm, none fits───▶ waitlisted ──promote (a seat fits)──▶ confirmed
            ├──cancel──▶ cancelled                    └──cancel──▶ cancelled
            └──expire (not confirmed in time)──▶ expired

Each move emits one event (``TRANSITIONS``). A working group has ``capacity`` seats, of which
``expert_reserved`` are kept for participants of type ``expert``. An expert takes a reserved seat
first, then a general one; anybody else only a general one. Seats go to confirmations in the order they
are confirmed; when none fits, the person is waitlisted. When seats become free (a cancellation, more
capacity), the waitlist is walked in order and each person for whom a seat fits gets it. Refusals are
:class:`DomainError` subclasses, mapped to problem+json by ``api.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

Seat = Literal["reserved", "general"]
Status = Literal["pending_confirmation", "confirmed", "waitlisted", "cancelled", "expired"]
Move = Literal["confirm_with_seat", "confirm_without_seat", "promote", "cancel", "expire"]

ACTIVE_STATUSES: tuple[Status, ...] = ("pending_confirmation", "confirmed", "waitlisted")

# The registration's life: from which state a move leads where, and the event it emits.
TRANSITIONS: dict[tuple[Status, Move], tuple[Status, str]] = {
    ("pending_confirmation", "confirm_with_seat"): ("confirmed", "registration.confirmed"),
    ("pending_confirmation", "confirm_without_seat"): ("waitlisted", "registration.waitlisted"),
    ("waitlisted", "promote"): ("confirmed", "registration.promoted"),
    ("pending_confirmation", "cancel"): ("cancelled", "registration.cancelled"),
    ("confirmed", "cancel"): ("cancelled", "registration.cancelled"),
    ("waitlisted", "cancel"): ("cancelled", "registration.cancelled"),
    ("pending_confirmation", "expire"): ("expired", "registration.expired"),
}

# A self-service link ends this long after its working group's last meeting.
LINK_GRACE = timedelta(days=1)


class DomainError(Exception):
    """Base of the service's refusals; ``field`` names the input at fault, ``errors`` lists several."""

    def __init__(
        self, reason: str, field: str | None = None, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.errors = errors


class NotFound(DomainError):
    """No such working group or meeting, or a link that is unknown, expired or of an expired registration."""


class InvalidRequest(DomainError):
    """An input the rules refuse (an unknown working group, a reservation above the capacity, ...)."""


class TransitionNotAllowed(DomainError):
    """The registration's state does not allow this move."""


class OptInMailsPaused(DomainError):
    """The hourly budget of opt-in mails is used up; ``retry_after`` seconds until trying again helps."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def transition(status: str, move: Move) -> tuple[Status, str]:
    """The state after ``move`` and the event it emits; :class:`TransitionNotAllowed` if not allowed."""
    try:
        return TRANSITIONS[(status, move)]  # type: ignore[index]
    except KeyError:
        raise TransitionNotAllowed(f"a {status} registration cannot {move.replace('_', ' ')}") from None


@dataclass(frozen=True)
class SeatCounts:
    capacity: int
    expert_reserved: int
    confirmed_general: int = 0
    confirmed_reserved: int = 0

    @property
    def reserved_seats(self) -> int:
        return max(0, min(self.expert_reserved, self.capacity))

    @property
    def general_seats(self) -> int:
        return self.capacity - self.reserved_seats

    @property
    def confirmed(self) -> int:
        return self.confirmed_general + self.confirmed_reserved

    @property
    def seats_left(self) -> int:
        return max(0, self.capacity - self.confirmed)


def allocate(counts: SeatCounts, participant_type: str) -> tuple[Seat | None, SeatCounts]:
    """The seat this participant gets now, if any, and the counts afterwards."""
    # Quotas can move under confirmed people (staff change the reservation or the capacity): whatever the
    # quotas say, never more confirmed than seats.
    if counts.confirmed >= counts.capacity:
        return None, counts
    if participant_type == "expert" and counts.confirmed_reserved < counts.reserved_seats:
        return "reserved", replace(counts, confirmed_reserved=counts.confirmed_reserved + 1)
    if counts.confirmed_general < counts.general_seats:
        return "general", replace(counts, confirmed_general=counts.confirmed_general + 1)
    return None, counts


def release(counts: SeatCounts, seat: Seat | None) -> SeatCounts:
    if seat == "reserved":
        return replace(counts, confirmed_reserved=max(0, counts.confirmed_reserved - 1))
    if seat == "general":
        return replace(counts, confirmed_general=max(0, counts.confirmed_general - 1))
    return counts


@dataclass(frozen=True)
class Waiting:
    registration_id: object
    participant_type: str


def promotions(
    counts: SeatCounts, waitlist: Iterable[Waiting]
) -> tuple[list[tuple[Waiting, Seat]], SeatCounts]:
    """Walk the waitlist in order; everyone for whom a seat fits gets it."""
    promoted: list[tuple[Waiting, Seat]] = []
    for waiting in waitlist:
        if counts.seats_left == 0:
            break
        seat, counts = allocate(counts, waiting.participant_type)
        if seat is not None:
            promoted.append((waiting, seat))
    return promoted, counts


@dataclass(frozen=True)
class GroupCounters:
    """A working group's seat and waitlist counters, as read under its row lock."""

    id: str
    capacity: int
    expert_reserved: int
    confirmed_general: int
    confirmed_reserved: int
    waitlist_seq: int
    waitlisted: int
    catalog_version: int

    @property
    def seats(self) -> SeatCounts:
        return SeatCounts(
            self.capacity, self.expert_reserved, self.confirmed_general, self.confirmed_reserved
        )

    def with_seats(self, counts: SeatCounts) -> GroupCounters:
        return replace(
            self, confirmed_general=counts.confirmed_general, confirmed_reserved=counts.confirmed_reserved
        )


@dataclass(frozen=True)
class Confirmation:
    """What confirming decides: a seat, or a place at the end of the waitlist."""

    status: Status
    event_type: str
    seat: Seat | None
    waitlist_seq: int | None
    waitlist_position: int | None
    group: GroupCounters


def confirm(group: GroupCounters, participant_type: str) -> Confirmation:
    """Double opt-in done: a seat if one fits (first confirmed, first served), else the waitlist."""
    seat, counts = allocate(group.seats, participant_type)
    if seat is not None:
        status, event_type = transition("pending_confirmation", "confirm_with_seat")
        return Confirmation(status, event_type, seat, None, None, group.with_seats(counts))
    status, event_type = transition("pending_confirmation", "confirm_without_seat")
    # A new place is the last one: the position is the waitlist's length.
    position = group.waitlisted + 1
    sequence = group.waitlist_seq + 1
    after = replace(group, waitlist_seq=sequence, waitlisted=position)
    return Confirmation(status, event_type, None, sequence, position, after)


def confirmation_needed(status: str, expires_at: datetime | None, now: datetime) -> bool | None:
    """Whether a confirm link still decides something: True (pending and in time), False (already
    decided: answer with the current state), None (pending but too late: the link is gone)."""
    if status != "pending_confirmation":
        return False
    return None if expires_at is not None and expires_at <= now else True


def cancel(group: GroupCounters, status: str, seat: Seat | None) -> tuple[GroupCounters, bool]:
    """The counters after cancelling, and whether a seat became free (then the waitlist moves up)."""
    transition(status, "cancel")
    if status == "confirmed":
        return group.with_seats(release(group.seats, seat)), True
    if status == "waitlisted":
        return replace(group, waitlisted=max(0, group.waitlisted - 1)), False
    return group, False


def promote(
    group: GroupCounters, waitlist: Sequence[Waiting]
) -> tuple[list[tuple[Waiting, Seat]], GroupCounters]:
    """Free seats to the waitlist, in order: who moves up, with which seat, and the counters after."""
    promoted, counts = promotions(group.seats, waitlist)
    for _ in promoted:
        transition("waitlisted", "promote")
    return promoted, replace(group.with_seats(counts), waitlisted=max(0, group.waitlisted - len(promoted)))


def links_expired(meetings: Sequence[Any], now: datetime) -> bool:
    """A self-service link ends a day after its working group's last meeting (while a date is still
    to be announced, it lives on). ``meetings`` have ``starts_at`` and ``ends_at``."""
    if not meetings or any(m.starts_at is None for m in meetings):
        return False
    last = max((m.ends_at or m.starts_at) for m in meetings if m.starts_at is not None)
    return bool(last + LINK_GRACE < now)


def check_capacity(capacity: int, expert_reserved: int) -> None:
    errors = validate_capacity(capacity, expert_reserved)
    if errors:
        raise InvalidRequest("One or more fields are invalid.", errors=errors)


def check_meeting_times(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidRequest("must be after starts_at", field="ends_at")


def validate_capacity(capacity: int, expert_reserved: int) -> list[dict[str, str]]:
    errors = []
    if capacity < 0:
        errors.append({"field": "capacity", "message": "must be 0 or more"})
    if expert_reserved < 0:
        errors.append({"field": "expert_reserved", "message": "must be 0 or more"})
    if expert_reserved > capacity:
        errors.append({"field": "expert_reserved", "message": "cannot exceed the capacity"})
    return errors


# === After the meetings: check-in and minutes (issue 24) ====================================================
# A confirmed registration is checked in at a meeting of its own working group by its id or by its check-in
# code, once (a second check-in answers the first entry). Walk-ins are counted without personal data. The
# counts of a meeting outlive its entries (erasure, retention). Minutes are versions; each is kept.

# Crockford's base 32: no I, L, O or U, so nothing is misread at the door; what people type for them is
# read as the digit it looks like.
CHECK_IN_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_IN_CODE_LENGTH = 8
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def normalise_check_in_code(typed: str) -> str:
    """The stored form of a code as someone typed or scanned it (``k7m2-9qxd`` → ``K7M29QXD``); refuses
    anything that cannot be a code."""
    code = "".join(typed.split()).replace("-", "").upper().translate(_LOOKALIKES)
    if len(code) != CHECK_IN_CODE_LENGTH or any(c not in CHECK_IN_ALPHABET for c in code):
        raise InvalidRequest("is not a check-in code", field="check_in_code")
    return code


def display_check_in_code(code: str) -> str:
    """Two groups of four, easier to read aloud: ``K7M2-9QXD``."""
    return f"{code[:4]}-{code[4:]}" if len(code) == CHECK_IN_CODE_LENGTH else code


def check_in_allowed(status: str, registration_group: str, meeting_group: str, field: str) -> None:
    """Only a confirmed registration of the meeting's own working group is checked in."""
    if registration_group != meeting_group:
        raise InvalidRequest("belongs to another working group", field=field)
    if status == "cancelled":
        raise InvalidRequest("the registration is cancelled", field=field)
    if status != "confirmed":
        raise InvalidRequest(f"the registration is {status}, not confirmed", field=field)


@dataclass(frozen=True)
class MeetingCounts:
    """What a meeting's attendance adds up to. ``registered``: confirmed registrations now;
    ``present_registered``: checked-in registrations (kept when their entries go)."""

    registered: int
    present_registered: int
    walk_ins: int
    by_language: dict[str, int]

    @property
    def present(self) -> int:
        return self.present_registered + self.walk_ins

    @property
    def no_show(self) -> int:
        return max(self.registered - self.present_registered, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "registered": self.registered,
            "present": self.present,
            "no_show": self.no_show,
            "walk_ins": self.walk_ins,
            "by_language": dict(sorted(self.by_language.items())),
        }


def interpreters(needed: dict[str, int], present: dict[str, int]) -> list[dict[str, Any]]:
    """Per interpretation language: how many asked for it, how many of them came."""
    return [
        {"language": language, "needed": needed.get(language, 0), "present": present.get(language, 0)}
        for language in sorted(set(needed) | set(present))
    ]


MINUTES_MAX_CHARS = 50_000


def check_document_url(url: str | None) -> None:
    """The full document's link: http(s) only (no ``javascript:``, no ``data:``)."""
    if url is not None and not url.lower().startswith(("https://", "http://")):
        raise InvalidRequest("must be an http or https address", field="document_url")


def next_minutes_version(newest: int | None) -> int:
    return (newest or 0) + 1
