"""A registration's life and the seat rules, without a database."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.registration import domain
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


# --- a registration's life: the state machine -------------------------------------------------------------


def _group(**counters) -> domain.GroupCounters:
    values = dict(
        id="wg",
        capacity=2,
        expert_reserved=0,
        confirmed_general=0,
        confirmed_reserved=0,
        waitlist_seq=0,
        waitlisted=0,
        catalog_version=1,
    )
    values.update(counters)
    return domain.GroupCounters(**values)


def test_every_move_leads_to_one_state_and_emits_one_event():
    assert domain.transition("pending_confirmation", "confirm_with_seat") == (
        "confirmed",
        "registration.confirmed",
    )
    assert domain.transition("pending_confirmation", "confirm_without_seat") == (
        "waitlisted",
        "registration.waitlisted",
    )
    assert domain.transition("waitlisted", "promote") == ("confirmed", "registration.promoted")
    assert domain.transition("pending_confirmation", "expire") == ("expired", "registration.expired")
    for status in ("pending_confirmation", "confirmed", "waitlisted"):
        assert domain.transition(status, "cancel") == ("cancelled", "registration.cancelled")


@pytest.mark.parametrize(
    ("status", "move"),
    [
        ("confirmed", "confirm_with_seat"),
        ("waitlisted", "confirm_without_seat"),
        ("confirmed", "promote"),
        ("pending_confirmation", "promote"),
        ("cancelled", "cancel"),
        ("expired", "cancel"),
        ("confirmed", "expire"),
        ("waitlisted", "expire"),
        ("cancelled", "confirm_with_seat"),
    ],
)
def test_moves_the_machine_forbids(status, move):
    with pytest.raises(domain.TransitionNotAllowed):
        domain.transition(status, move)


def test_confirming_takes_a_seat_then_the_end_of_the_waitlist():
    first = domain.confirm(_group(capacity=1), "resident")
    assert (first.status, first.event_type, first.seat) == ("confirmed", "registration.confirmed", "general")
    assert first.group.confirmed_general == 1 and first.waitlist_position is None
    second = domain.confirm(first.group, "resident")
    assert (second.status, second.event_type, second.seat) == ("waitlisted", "registration.waitlisted", None)
    assert (second.waitlist_seq, second.waitlist_position) == (1, 1)
    third = domain.confirm(second.group, "expert")
    assert (third.waitlist_seq, third.waitlist_position) == (2, 2)
    assert third.group.waitlisted == 2 and third.group.seats.confirmed == 1


def test_a_confirm_link_decides_only_while_pending_and_in_time():
    now = datetime(2019, 3, 1, tzinfo=UTC)
    assert domain.confirmation_needed("pending_confirmation", now + timedelta(hours=1), now) is True
    assert domain.confirmation_needed("pending_confirmation", now, now) is None  # too late: gone
    for decided in ("confirmed", "waitlisted", "cancelled"):
        assert domain.confirmation_needed(decided, None, now) is False  # answer the current state


def test_cancelling_frees_a_seat_only_when_confirmed():
    group = _group(capacity=2, confirmed_general=2, waitlisted=1, waitlist_seq=1)
    after, freed = domain.cancel(group, "confirmed", "general")
    assert freed and after.confirmed_general == 1 and after.waitlisted == 1
    after, freed = domain.cancel(group, "waitlisted", None)
    assert not freed and after.waitlisted == 0 and after.confirmed_general == 2
    after, freed = domain.cancel(group, "pending_confirmation", None)
    assert not freed and after == group
    with pytest.raises(domain.TransitionNotAllowed):
        domain.cancel(group, "cancelled", None)


def test_promotion_walks_the_waitlist_and_counts_it_down():
    group = _group(capacity=3, expert_reserved=1, confirmed_general=2, waitlisted=3, waitlist_seq=3)
    waiting = [Waiting("a", "resident"), Waiting("b", "expert"), Waiting("c", "resident")]
    promoted, after = domain.promote(group, waiting)
    assert [(w.registration_id, seat) for w, seat in promoted] == [("b", "reserved")]
    assert after.waitlisted == 2 and after.confirmed_reserved == 1 and after.seats.seats_left == 0


def test_links_end_a_day_after_the_last_meeting():
    last = datetime(2019, 5, 2, 17, tzinfo=UTC)
    meetings = [
        SimpleNamespace(starts_at=last - timedelta(days=30), ends_at=None),
        SimpleNamespace(starts_at=last, ends_at=None),
    ]
    assert not domain.links_expired(meetings, last + timedelta(hours=23))
    assert domain.links_expired(meetings, last + timedelta(days=1, minutes=1))
    undated = [*meetings, SimpleNamespace(starts_at=None, ends_at=None)]
    assert not domain.links_expired(undated, last + timedelta(days=100))  # a date still to come


def test_refusals_carry_what_the_api_shows():
    with pytest.raises(domain.InvalidRequest) as refused:
        domain.check_capacity(2, 3)
    assert refused.value.errors == [{"field": "expert_reserved", "message": "cannot exceed the capacity"}]
    with pytest.raises(domain.InvalidRequest) as refused:
        domain.check_meeting_times(datetime(2019, 3, 6, 18, tzinfo=UTC), datetime(2019, 3, 6, 17, tzinfo=UTC))
    assert refused.value.field == "ends_at"
    domain.check_meeting_times(None, datetime(2019, 3, 6, 17, tzinfo=UTC))


def test_opt_in_mail_counts_the_mailbox_first_then_the_hour() -> None:
    assert domain.opt_in_mail(0, 0, 3, 100) == "send"
    assert domain.opt_in_mail(3, 0, 3, 100) == "silent"
    assert domain.opt_in_mail(3, 100, 3, 100) == "silent"  # the mailbox's budget comes first
    assert domain.opt_in_mail(2, 100, 3, 100) == "paused"
    assert domain.opt_in_mail(50, 5000, 0, 0) == "send"  # 0: no budget


def test_an_erasure_link_starts_once_and_only_in_time() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert domain.erasure_confirmable("pending_verification", now + timedelta(hours=1), now) is True
    assert domain.erasure_confirmable("pending_verification", now, now) is None
    assert domain.erasure_confirmable("erasing", now - timedelta(days=1), now) is False
    assert domain.erasure_complete({"registration": 1, "notification": 0}, ("registration", "notification"))
    assert not domain.erasure_complete({"registration": 1}, ("registration", "notification"))
