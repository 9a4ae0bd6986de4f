"""Seats: no overbooking, ever, under races of confirmations, cancellations and capacity changes."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from services.registration.models import registrations
from tests.registration.support import pending_tokens, seat_state
from tests.support.staff import auth


async def test_200_confirmations_race_for_the_last_20_seats(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime, capacity=50)
    for token in await pending_tokens(api, registration_settings, wg, 30):
        assert (await api.post("/v1/registrations/confirm", json={"token": token})).json()[
            "status"
        ] == "confirmed"
    tokens = await pending_tokens(api, registration_settings, wg, 200)

    answers = await asyncio.gather(
        *(api.post("/v1/registrations/confirm", json={"token": t}) for t in tokens)
    )
    assert all(a.status_code == 200 for a in answers)
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("confirmed") == 20 and statuses.count("waitlisted") == 180
    state = await seat_state(api.runtime, wg)
    assert state["confirmed"] == 50 == state["counter"] == state["capacity"]
    assert state["waitlisted"] == 180
    # Waitlist positions are 1..180, in the order of confirmation.
    positions = sorted(a.json()["waitlist_position"] for a in answers if a.json()["status"] == "waitlisted")
    assert positions == list(range(1, 181))
    async with api.runtime.transaction() as session:
        order = (
            (
                await session.execute(
                    select(registrations.c.confirmed_at)
                    .where(registrations.c.working_group_id == wg, registrations.c.status == "waitlisted")
                    .order_by(registrations.c.waitlist_seq)
                )
            )
            .scalars()
            .all()
        )
    assert order == sorted(order)


async def test_cancellations_confirmations_and_capacity_changes_race_without_losing_a_seat(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=10)
    confirmed = await pending_tokens(api, registration_settings, wg, 10)
    for token in confirmed:
        await api.post("/v1/registrations/confirm", json={"token": token})
    pending = await pending_tokens(api, registration_settings, wg, 20)
    admin = auth(registration_settings, "admin")

    await asyncio.gather(
        *(api.post("/v1/registrations/cancel", json={"token": t}) for t in confirmed[:5]),
        *(api.post("/v1/registrations/confirm", json={"token": t}) for t in pending),
        api.patch(f"/v1/working-groups/{wg}", json={"capacity": 15}, headers=admin),
    )
    state = await seat_state(api.runtime, wg)
    # 5 still confirmed from before + 20 new = 25 active for 15 seats.
    assert state["capacity"] == 15
    assert state["confirmed"] == 15 == state["counter"]
    assert state["waitlisted"] == 10
    assert state["cancelled"] == 5


async def test_raising_capacity_promotes_and_expert_reservation_is_respected(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=2, expert_reserved=1)
    residents = await pending_tokens(api, registration_settings, wg, 2)
    experts = await pending_tokens(api, registration_settings, wg, 2, participant_type="expert")
    results = [
        (await api.post("/v1/registrations/confirm", json={"token": t})).json()["status"]
        for t in (*residents, *experts)
    ]
    # One general seat for the first resident; the second resident waits although the reserved seat is free.
    assert results == ["confirmed", "waitlisted", "confirmed", "waitlisted"]
    admin = auth(registration_settings, "admin")
    response = await api.patch(f"/v1/working-groups/{wg}", json={"capacity": 3}, headers=admin)
    assert response.status_code == 200 and response.json()["confirmed"] == 3
    assert (
        await api.patch(f"/v1/working-groups/{wg}", json={"expert_reserved": 9}, headers=admin)
    ).status_code == 422


async def test_changing_the_expert_reservation_never_overbooks(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=2)
    for token in await pending_tokens(api, registration_settings, wg, 2):
        await api.post("/v1/registrations/confirm", json={"token": token})
    admin = auth(registration_settings, "admin")
    assert (
        await api.patch(f"/v1/working-groups/{wg}", json={"expert_reserved": 1}, headers=admin)
    ).status_code == 200
    [expert] = await pending_tokens(api, registration_settings, wg, 1, participant_type="expert")
    answer = (await api.post("/v1/registrations/confirm", json={"token": expert})).json()
    assert answer["status"] == "waitlisted"
    state = await seat_state(api.runtime, wg)
    assert state["confirmed"] == 2 == state["counter"] == state["capacity"]
