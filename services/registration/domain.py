"""Seat allocation and the waitlist, as plain Python: no I/O, driven by unit tests.

A working group has ``capacity`` seats, of which ``expert_reserved`` are kept for participants of type
``expert``. An expert takes a reserved seat first, then a general one; anybody else only a general one.
Seats go to confirmations in the order they are confirmed; when none fits, the person is waitlisted.
When seats become free (a cancellation, more capacity), the waitlist is walked in order and each person
for whom a seat fits gets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

Seat = Literal["reserved", "general"]


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


def validate_capacity(capacity: int, expert_reserved: int) -> list[dict[str, str]]:
    errors = []
    if capacity < 0:
        errors.append({"field": "capacity", "message": "must be 0 or more"})
    if expert_reserved < 0:
        errors.append({"field": "expert_reserved", "message": "must be 0 or more"})
    if expert_reserved > capacity:
        errors.append({"field": "expert_reserved", "message": "cannot exceed the capacity"})
    return errors
