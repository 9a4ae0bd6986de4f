"""Seat allocation rules, without a database."""

from services.registration.domain import SeatCounts, Waiting, allocate, promotions, release, validate_capacity


def test_first_come_first_served_until_full_then_nothing():
    counts = SeatCounts(capacity=2, expert_reserved=0)
    seat1, counts = allocate(counts, "resident")
    seat2, counts = allocate(counts, "resident")
    seat3, counts = allocate(counts, "resident")
    assert (seat1, seat2, seat3) == ("general", "general", None)
    assert counts.confirmed == 2 and counts.seats_left == 0


def test_experts_take_reserved_seats_first_residents_never_do():
    counts = SeatCounts(capacity=3, expert_reserved=1)
    seat, counts = allocate(counts, "expert")
    assert seat == "reserved"
    seat, counts = allocate(counts, "expert")
    assert seat == "general"  # reserved seats used up: a general one
    seat, counts = allocate(counts, "resident")
    assert seat == "general"
    seat, counts = allocate(counts, "resident")
    assert seat is None
    # A resident never takes a reserved seat, even when one is free.
    counts = SeatCounts(capacity=2, expert_reserved=1, confirmed_general=1)
    seat, _ = allocate(counts, "resident")
    assert seat is None
    seat, _ = allocate(counts, "organization")
    assert seat is None


def test_a_freed_reserved_seat_goes_to_the_first_expert_on_the_waitlist():
    counts = SeatCounts(capacity=2, expert_reserved=1, confirmed_general=1, confirmed_reserved=1)
    counts = release(counts, "reserved")
    waitlist = [Waiting("r1", "resident"), Waiting("e1", "expert"), Waiting("e2", "expert")]
    promoted, counts = promotions(counts, waitlist)
    assert [(w.registration_id, seat) for w, seat in promoted] == [("e1", "reserved")]
    assert counts.seats_left == 0


def test_more_capacity_promotes_in_waitlist_order():
    counts = SeatCounts(capacity=4, expert_reserved=0, confirmed_general=2)
    promoted, counts = promotions(counts, [Waiting(i, "resident") for i in ("a", "b", "c")])
    assert [w.registration_id for w, _ in promoted] == ["a", "b"]
    assert counts.confirmed == 4


def test_capacity_rules():
    assert validate_capacity(10, 2) == []
    assert validate_capacity(1, 2)[0]["field"] == "expert_reserved"
    assert validate_capacity(-1, 0)[0]["field"] == "capacity"


def test_moving_the_reservation_under_confirmed_people_never_overbooks():
    # Two residents hold both seats; then staff reserve one seat for experts.
    counts = SeatCounts(capacity=2, expert_reserved=1, confirmed_general=2)
    assert allocate(counts, "expert")[0] is None
    # Experts hold reserved seats; then staff lower the reservation.
    counts = SeatCounts(capacity=2, expert_reserved=0, confirmed_reserved=2)
    assert allocate(counts, "resident")[0] is None
    assert promotions(counts, [Waiting("x", "resident"), Waiting("y", "expert")])[0] == []
