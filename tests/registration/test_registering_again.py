"""Registering again, retrying a request, bots: nothing twice, nothing to enumerate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.registration.models import registrations
from tests.conftest import registration_body, unique_email
from tests.registration.support import events_of


async def test_registering_again_creates_nothing_and_mails_the_existing_status(api, make_working_group):
    wg = await make_working_group(api.runtime)
    email = unique_email()
    first = await api.post("/v1/registrations", json=registration_body(working_group_id=wg, email=email))
    async with api.runtime.transaction() as session:  # a day later (within a day nothing is mailed again)
        await session.execute(
            registrations.update()
            .where(registrations.c.email_key == email.lower())
            .values(public_mail_at=datetime.now(UTC) - timedelta(hours=25))
        )
    second = await api.post(
        "/v1/registrations",
        json=registration_body(working_group_id=wg, email=email.upper(), name="Someone Else"),
    )
    assert first.status_code == second.status_code == 202
    assert first.json().keys() == second.json().keys() and second.json()["status"] == "pending_confirmation"
    async with api.runtime.transaction() as session:
        count = await session.scalar(
            select(func.count()).select_from(registrations).where(registrations.c.email_key == email.lower())
        )
    assert count == 1
    told = await events_of(api.runtime, "registration.resubmitted", registration_id=first.json()["id"])
    assert len(told) == 1 and told[0]["status"] == "pending_confirmation"
    assert told[0]["recipient"]["name"] == ""  # neither the stored name nor the new one: unproven


async def test_idempotency_key_returns_the_first_answer_and_rejects_another_body(api, make_working_group):
    wg = await make_working_group(api.runtime)
    body = registration_body(working_group_id=wg)
    headers = {"Idempotency-Key": "form-submit-12345"}
    answers = await asyncio.gather(
        *(api.post("/v1/registrations", json=body, headers=headers) for _ in range(3))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    other = await api.post("/v1/registrations", json={**body, "name": "Other"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    async with api.runtime.transaction() as session:
        n = await session.scalar(
            select(func.count()).select_from(registrations).where(registrations.c.email == body["email"])
        )
    assert n == 1


async def test_the_honeypot_accepts_and_stores_nothing(api, make_working_group):
    wg = await make_working_group(api.runtime)
    body = registration_body(working_group_id=wg, website="http://spam.example")
    assert (await api.post("/v1/registrations", json=body)).status_code == 202
    async with api.runtime.transaction() as session:
        n = await session.scalar(
            select(func.count()).select_from(registrations).where(registrations.c.email == body["email"])
        )
    assert n == 0
