"""Periodic jobs: expiry of unconfirmed registrations, meeting reminders across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from services.registration import service, staff
from services.registration.app import create_app
from services.registration.models import registrations
from services.registration.schemas import RegistrationRequest
from tests.conftest import registration_body
from tests.registration.support import events_of, latest_token, register


async def test_unconfirmed_registrations_expire_and_their_personal_data_is_deleted(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime)
    request = RegistrationRequest(
        **registration_body(working_group_id=wg, accessibility_needs="Gebärdensprache")
    )
    async with api.runtime.transaction() as session:
        reg_id = await service.submit_registration(
            session,
            registration_settings,
            api.runtime.catalog,
            request,
            now=datetime.now(UTC) - timedelta(hours=49),
        )
    async with api.runtime.transaction() as session:
        assert await service.expire_unconfirmed(session, registration_settings, api.runtime.catalog) >= 1
    async with api.runtime.transaction() as session:
        row = (await session.execute(select(registrations).where(registrations.c.id == reg_id))).one()
    assert row.status == "expired"
    assert (row.name, row.email, row.accessibility_needs) == (None, None, None)
    expired = await events_of(api.runtime, "registration.expired", registration_id=reg_id)
    assert len(expired) == 1 and expired[0]["recipient"]["email"] == request.email


async def test_reminders_go_out_exactly_once_with_two_replicas(
    api, make_working_group, registration_settings
):
    starts = datetime.now(UTC) + timedelta(hours=24)
    wg = await make_working_group(api.runtime, capacity=5, starts_at=starts)
    for _ in range(3):
        reg_id, _ = await register(api, wg)
        await api.post("/v1/registrations/confirm", json={"token": await latest_token(api.runtime, reg_id)})
    other = create_app(registration_settings)  # a second replica with its own pool

    async def run_job(runtime) -> None:
        async with runtime.transaction() as session:
            await staff.send_due_reminders(session, registration_settings)

    for _ in range(3):
        await asyncio.gather(run_job(api.runtime), run_job(other.state.runtime))
    await other.state.runtime.engine.dispose()
    reminders = [
        e for e in await events_of(api.runtime, "meeting.reminder_due") if e["working_group"]["id"] == wg
    ]
    assert len(reminders) == 1
    assert len(reminders[0]["participants"]) == 3
    assert reminders[0]["meeting"]["number"] == 1


async def test_a_replica_that_saw_the_same_due_meeting_does_not_remind_again(
    api, make_working_group, registration_settings, monkeypatch
):
    from services.registration import repository

    wg = await make_working_group(api.runtime, capacity=5, starts_at=datetime.now(UTC) + timedelta(hours=20))
    reg_id, _ = await register(api, wg)
    await api.post("/v1/registrations/confirm", json={"token": await latest_token(api.runtime, reg_id)})
    lead = timedelta(hours=registration_settings.reminder_lead_hours)
    async with api.runtime.transaction() as session:
        seen_by_both = [
            c
            for c in await repository.meetings_due_for_reminder(session, datetime.now(UTC), lead)
            if c.working_group_id == wg
        ]
    assert len(seen_by_both) == 1
    async with api.runtime.transaction() as session:
        await staff.send_due_reminders(session, registration_settings)

    # The slower replica works from the list it read before the first one committed.
    async def stale_candidates(*_args):
        return seen_by_both

    monkeypatch.setattr(repository, "meetings_due_for_reminder", stale_candidates)
    async with api.runtime.transaction() as session:
        assert await staff.send_due_reminders(session, registration_settings) == 0
    reminders = [
        e for e in await events_of(api.runtime, "meeting.reminder_due") if e["working_group"]["id"] == wg
    ]
    assert len(reminders) == 1
