"""Confirming decides the seat by ``domain.confirm`` under the working group's lock, in the request's unit of
work: the answer is durable when it is given, a link clicked twice at once decides once, and the events
written are the events consumers read."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from shared import events as ev
from tests.registration.support import pending_tokens, seat_state
from tests.support.catalog import create_working_group


async def test_the_events_written_are_the_events_consumers_read(api, registration_settings):
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
    assert confirmed.recipient.address_proven and waitlisted.recipient.address_proven


async def test_one_link_clicked_many_times_at_once_takes_one_seat_and_sends_one_event(
    api, registration_settings
):
    wg = await create_working_group(api.runtime, capacity=3)
    [token] = await pending_tokens(api, registration_settings, wg, 1)

    answers = await asyncio.gather(
        *(api.post("/v1/registrations/confirm", json={"token": token}) for _ in range(10))
    )

    assert {a.status_code for a in answers} == {200}
    assert {a.json()["status"] for a in answers} == {"confirmed"}
    state = await seat_state(api.runtime, wg)
    assert state["confirmed"] == 1 == state["counter"]
    async with api.runtime.transaction() as session:
        events = (
            await session.execute(
                text(
                    "SELECT count(*) FROM outbox WHERE event_type = 'registration.confirmed' "
                    "AND payload -> 'working_group' ->> 'id' = :wg"
                ),
                {"wg": wg},
            )
        ).scalar_one()
    assert events == 1


async def test_a_confirmation_is_committed_before_it_is_answered(api, registration_settings):
    runtime = api.runtime
    wg = await create_working_group(runtime, capacity=5)
    [token] = await pending_tokens(api, registration_settings, wg, 1)

    answer = await api.post("/v1/registrations/confirm", json={"token": token})

    assert answer.json()["status"] == "confirmed"
    state = await seat_state(runtime, wg)
    assert state["confirmed"] == 1 == state["counter"]
