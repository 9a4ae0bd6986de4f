"""Helpers of the registration tests: the tokens and events in the outbox, registering."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, select

from services.registration import service
from services.registration.models import outbox, registrations, working_groups
from services.registration.schemas import RegistrationRequest
from tests.conftest import registration_body


async def latest_token(runtime, registration_id=None, email: str | None = None) -> str:
    """The self-service token as the person's newest mail would carry it (from the outbox event)."""
    query = select(outbox.c.payload).order_by(outbox.c.seq.desc())
    if registration_id is not None:
        query = query.where(outbox.c.payload["registration_id"].astext == str(registration_id))
    if email is not None:
        query = query.where(outbox.c.payload["recipient"]["email"].astext == email)
    async with runtime.transaction() as session:
        for payload in (await session.execute(query)).scalars():
            url = (payload.get("links") or {}).get("cancel_url")
            if url:
                return parse_qs(urlparse(url).query)["token"][0]
    raise AssertionError("no token found")


async def events_of(runtime, event_type: str, **payload_match) -> list[dict]:
    query = select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
    for key, value in payload_match.items():
        query = query.where(outbox.c.payload[key].astext == str(value))
    async with runtime.transaction() as session:
        return list((await session.execute(query)).scalars())


async def register(api, wg_id: str, **overrides) -> tuple[str, str]:
    body = registration_body(working_group_id=wg_id, **overrides)
    response = await api.post("/v1/registrations", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"], body["email"]


async def pending_tokens(
    api, registration_settings, wg: str, n: int, participant_type: str = "resident"
) -> list[str]:
    tokens = []
    for _ in range(n):
        request = RegistrationRequest(
            **registration_body(working_group_id=wg, participant_type=participant_type)
        )
        async with api.runtime.transaction() as session:
            reg_id = await service.submit_registration(
                session, registration_settings, api.runtime.catalog, request
            )
        tokens.append(await latest_token(api.runtime, reg_id))
    return tokens


async def seat_state(runtime, wg: str) -> dict:
    async with runtime.transaction() as session:
        row = (await session.execute(select(working_groups).where(working_groups.c.id == wg))).one()
        by_status = dict(
            (
                await session.execute(
                    select(registrations.c.status, func.count())
                    .where(registrations.c.working_group_id == wg)
                    .group_by(registrations.c.status)
                )
            ).all()
        )
    state = {"capacity": row.capacity, "counter": row.confirmed_general + row.confirmed_reserved, **by_status}
    # The waitlist counter (a newcomer's position) always equals the waitlist's real length.
    assert row.waitlisted == by_status.get("waitlisted", 0)
    return state


async def opt_in_mails_since(session, since) -> int:
    """How many opt-in mails public POSTs sent since ``since`` (the count the hourly cap compares)."""
    return int(
        await session.scalar(
            select(func.count()).select_from(registrations).where(registrations.c.public_mail_at > since)
        )
        or 0
    )
