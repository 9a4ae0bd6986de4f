"""The seat decision runs in the database (migration 0009, ``confirm_registration``) while the rules live in
``domain.confirm``: the two must agree for every combination of counters and participant type, and the
function must write exactly what the domain says (status, seat, counters, place in the waitlist, the event)."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from services.registration import domain
from services.registration import repository as repo
from shared import events as ev
from tests.registration.support import catalog_version, confirmation_of, insert_pending, pending_tokens
from tests.support.catalog import create_working_group

# Small numbers reach every branch: full, reserved seats left or not, general seats left or not, quotas
# moved under confirmed people (more confirmed than a quota allows).
CASES = [
    (capacity, reserved, general, confirmed_reserved, participant_type)
    for capacity, reserved, general, confirmed_reserved, participant_type in itertools.product(
        range(0, 4), range(0, 4), range(0, 4), range(0, 3), ("resident", "expert")
    )
]


async def test_the_database_decides_every_seat_as_the_domain_does(api):
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=1)
    now = datetime.now(UTC)
    disagreements = []
    for capacity, reserved, general, confirmed_reserved, participant_type in CASES:
        registration_id = uuid.uuid4()
        async with runtime.transaction() as session:
            await session.execute(
                text(
                    "UPDATE working_groups SET capacity = :c, expert_reserved = :r, confirmed_general = :g, "
                    "confirmed_reserved = :cr, waitlist_seq = 7, waitlisted = 3 WHERE id = :wg"
                ),
                {"c": capacity, "r": reserved, "g": general, "cr": confirmed_reserved, "wg": wg},
            )
            await insert_pending(session, wg, registration_id, participant_type)
            version = await catalog_version(session, wg)
        group = domain.GroupCounters(wg, capacity, reserved, general, confirmed_reserved, 7, 3, version)
        expected = domain.confirm(group, participant_type)
        confirmed_id, waitlisted_id = uuid.uuid4(), uuid.uuid4()
        async with runtime.transaction() as session:
            confirmation = repo.Confirmation(
                registration_id,
                version,
                now,
                (confirmed_id, "registration.confirmed", 1, json.dumps({"kind": "confirmed"}), None),
                (waitlisted_id, "registration.waitlisted", 1, json.dumps({"kind": "waitlisted"}), None),
            )
            [decided] = await repo.decide_confirmations(session, wg, [confirmation])
            row = (
                await session.execute(
                    text(
                        "SELECT r.status, r.seat, r.waitlist_seq, w.confirmed_general, w.confirmed_reserved, "
                        "w.waitlist_seq AS group_seq, w.waitlisted FROM registrations r "
                        "JOIN working_groups w ON w.id = r.working_group_id WHERE r.id = :id"
                    ),
                    {"id": registration_id},
                )
            ).one()
            event = (
                await session.execute(
                    text("SELECT event_type, payload FROM outbox WHERE id = :id"), {"id": confirmed_id}
                )
            ).one()
        got = (
            decided["outcome"],
            decided["seat"],
            decided["waitlist_position"],
            row.status,
            row.seat,
            row.waitlist_seq,
            (row.confirmed_general, row.confirmed_reserved, row.group_seq, row.waitlisted),
            event.event_type,
            event.payload.get("waitlist_position"),
        )
        after = expected.group
        want = (
            expected.status,
            expected.seat,
            expected.waitlist_position,
            expected.status,
            expected.seat,
            expected.waitlist_seq,
            (after.confirmed_general, after.confirmed_reserved, after.waitlist_seq, after.waitlisted),
            expected.event_type,
            expected.waitlist_position,
        )
        if got != want:
            disagreements.append(
                ((capacity, reserved, general, confirmed_reserved, participant_type), got, want)
            )
    assert not disagreements, disagreements[:5]


async def test_a_decided_registration_is_not_decided_again_and_stale_meetings_change_nothing(api):
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=5)
    registration_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with runtime.transaction() as session:
        await insert_pending(session, wg, registration_id)

    async def decide(version: int):
        async with runtime.transaction() as session:
            confirmation = repo.Confirmation(
                registration_id,
                version,
                now,
                (uuid.uuid4(), "registration.confirmed", 1, "{}", None),
                (uuid.uuid4(), "registration.waitlisted", 1, "{}", None),
            )
            return (await repo.decide_confirmations(session, wg, [confirmation]))[0]

    stale = await decide(-1)  # built with meetings that are no longer current
    assert stale["outcome"] == "stale"
    first = await decide(0)
    assert (first["outcome"], first["seat"]) == ("confirmed", "general")
    assert await decide(0) is None  # a second click: nothing is decided twice
    async with runtime.transaction() as session:
        counters = (
            await session.execute(
                text("SELECT confirmed_general, confirmed_reserved FROM working_groups WHERE id = :wg"),
                {"wg": wg},
            )
        ).one()
        events = (
            await session.execute(
                text(
                    "SELECT count(*) FROM outbox WHERE payload = '{}'::jsonb AND event_type LIKE 'registration.%'"
                )
            )
        ).scalar_one()
    assert tuple(counters) == (1, 0)
    assert events == 1


async def test_the_events_the_database_writes_are_the_events_consumers_read(api, registration_settings):
    """The waitlisted event is written from the confirmed one's payload plus the place: it must still be a
    valid ``registration.waitlisted`` event (and the confirmed one a valid ``registration.confirmed``)."""
    wg = await create_working_group(api.runtime, capacity=1)
    first, second = await pending_tokens(api, registration_settings, wg, 2)
    assert (await api.post("/v1/registrations/confirm", json={"token": first})).json()[
        "status"
    ] == "confirmed"
    answer = (await api.post("/v1/registrations/confirm", json={"token": second})).json()
    assert answer["status"] == "waitlisted" and answer["waitlist_position"] == 1
    async with api.runtime.transaction() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT event_type, event_version, payload FROM outbox "
                    "WHERE payload -> 'working_group' ->> 'id' = :wg AND event_type IN "
                    "('registration.confirmed', 'registration.waitlisted') ORDER BY seq"
                ),
                {"wg": wg},
            )
        ).all()
    assert [r.event_type for r in rows] == ["registration.confirmed", "registration.waitlisted"]
    confirmed = ev.RegistrationConfirmed.model_validate(rows[0].payload)
    waitlisted = ev.RegistrationWaitlisted.model_validate(rows[1].payload)
    assert waitlisted.waitlist_position == 1 and waitlisted.registration_id != confirmed.registration_id
    assert [r.event_version for r in rows] == [
        ev.RegistrationConfirmed.version,
        ev.RegistrationWaitlisted.version,
    ]


async def test_a_batch_is_decided_in_its_order_as_one_confirmation_after_another(api):
    """``confirm_registrations`` (migration 0010) decides a batch under one lock: each in the order given,
    by the same rules as alone; a stale one and one no longer pending are left as they were."""
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=3, expert_reserved=1)
    now = datetime.now(UTC)
    kinds = ["resident", "expert", "resident", "resident", "expert", "resident", "expert"]
    ids = [uuid.uuid4() for _ in kinds]
    async with runtime.transaction() as session:
        for registration_id, kind in zip(ids, kinds, strict=True):
            await insert_pending(session, wg, registration_id, kind)
        version = await catalog_version(session, wg)

    def confirmation(registration_id: uuid.UUID, version: int) -> repo.Confirmation:
        return confirmation_of(registration_id, version, now)

    async with runtime.transaction() as session:  # the fourth is decided before the batch
        [alone] = await repo.decide_confirmations(session, wg, [confirmation(ids[3], version)])
    assert alone["outcome"] == "confirmed"
    batch = [confirmation(i, version) for i in ids]
    batch[1] = confirmation(ids[1], version - 1)  # built for meetings that have changed since
    async with runtime.transaction() as session:
        decided = await repo.decide_confirmations(session, wg, batch)

    # What the domain decides, one after the other, from the counters after the fourth's seat.
    group = domain.GroupCounters(wg, 3, 1, 1, 0, 0, 0, version)
    want: list[tuple | None] = []
    for index, kind in enumerate(kinds):
        if index == 1:
            want.append(("stale", None, None))
        elif index == 3:
            want.append(None)  # no longer pending
        else:
            outcome = domain.confirm(group, kind)
            group = outcome.group
            want.append((outcome.status, outcome.seat, outcome.waitlist_position))
    got = [None if d is None else (d["outcome"], d["seat"], d["waitlist_position"]) for d in decided]
    assert got == want
    # The second resident finds the general seats taken; the expert after it still gets the reserved one.
    assert [w[0] for w in want if w] == [
        "confirmed",
        "stale",
        "waitlisted",
        "confirmed",
        "waitlisted",
        "waitlisted",
    ]
    async with runtime.transaction() as session:
        statuses = dict(
            (
                await session.execute(
                    text("SELECT id, status FROM registrations WHERE working_group_id = :wg"), {"wg": wg}
                )
            ).all()
        )
        events = (
            (
                await session.execute(
                    text(
                        "SELECT payload ->> 'registration_id' FROM outbox "
                        "WHERE payload ->> 'registration_id' = ANY(:ids) ORDER BY seq"
                    ),
                    {"ids": [str(i) for i in ids]},
                )
            )
            .scalars()
            .all()
        )
    assert statuses[ids[1]] == "pending_confirmation"  # the stale one: nothing written
    assert events == [str(ids[i]) for i in (3, 0, 2, 4, 5, 6)]  # one event each, in the order decided
