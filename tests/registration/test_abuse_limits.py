"""Mail as a weapon: one mail per address and working group per 24 h from public POSTs, no unverified
name in the opt-in mail, an hourly cap on opt-in mails, rate limits per IPv6 /64 with a hard client cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from services.registration.app import create_app
from services.registration.models import outbox, registrations
from shared.http import Problem
from shared.ratelimit import ClientRateLimiter, client_key
from tests.conftest import registration_body, running
from tests.registration.support import opt_in_mails_since


async def _events(runtime, email: str) -> list[str]:
    async with runtime.transaction() as session:
        return list(
            (
                await session.execute(
                    select(outbox.c.event_type)
                    .where(outbox.c.payload["recipient"]["email"].astext == email)
                    .order_by(outbox.c.seq)
                )
            ).scalars()
        )


@pytest.fixture
async def api(registration_settings):
    app = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as client:
        client.runtime = app.state.runtime
        yield client


async def test_repeated_posts_mail_an_address_once_per_working_group_and_day(api, make_working_group):
    wg = await make_working_group(api.runtime)
    body = registration_body(working_group_id=wg, name="Visit https://evil.example now")
    answers = [await api.post("/v1/registrations", json=body) for _ in range(4)]
    assert [a.status_code for a in answers] == [202] * 4
    assert {a.json()["status"] for a in answers} == {"pending_confirmation"}
    assert await _events(api.runtime, body["email"]) == ["registration.submitted"]

    # A day later, registering again tells the person their status once more — once.
    async with api.runtime.transaction() as session:
        await session.execute(
            update(registrations)
            .where(registrations.c.email == body["email"])
            .values(public_mail_at=datetime.now(UTC) - timedelta(hours=25))
        )
    for _ in range(3):
        assert (await api.post("/v1/registrations", json=body)).status_code == 202
    assert await _events(api.runtime, body["email"]) == ["registration.submitted", "registration.resubmitted"]


async def test_the_opt_in_mail_never_carries_the_typed_name(api, make_working_group):
    wg = await make_working_group(api.runtime)
    body = registration_body(working_group_id=wg, name="Win a prize at https://evil.example")
    assert (await api.post("/v1/registrations", json=body)).status_code == 202
    async with api.runtime.transaction() as session:
        payload = (
            await session.execute(
                select(outbox.c.payload).where(outbox.c.payload["recipient"]["email"].astext == body["email"])
            )
        ).scalar_one()
    assert payload["recipient"]["name"] == "" and "evil" not in str(payload)


async def test_opt_in_mails_have_an_hourly_cap(registration_settings, make_working_group):
    probe = create_app(registration_settings)
    async with running(probe):
        async with probe.state.runtime.transaction() as session:
            already = await opt_in_mails_since(session, datetime.now(UTC) - timedelta(hours=1))
    app = create_app(
        registration_settings.model_copy(
            update={"rate_limit_per_minute": 0, "opt_in_mails_per_hour": already + 2}
        )
    )
    async with running(app) as client:
        wg = await make_working_group(app.state.runtime)
        first = await client.post("/v1/registrations", json=registration_body(working_group_id=wg))
        second = await client.post("/v1/registrations", json=registration_body(working_group_id=wg))
        third_body = registration_body(working_group_id=wg)
        third = await client.post("/v1/registrations", json=third_body)
        assert (first.status_code, second.status_code, third.status_code) == (202, 202, 429)
        assert third.headers["retry-after"] and third.headers["content-type"].startswith(
            "application/problem+json"
        )
        async with app.state.runtime.transaction() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(registrations)
                .where(registrations.c.email == third_body["email"])
            )
        assert stored == 0


def test_ipv6_clients_are_counted_per_64_network():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
    limiter = ClientRateLimiter(per_minute=3)
    for suffix in ("1", "2", "3"):
        limiter.check(f"2001:db8:1:2::{suffix}")
    with pytest.raises(Problem) as refused:
        limiter.check("2001:db8:1:2::dead:beef")  # another address of the same /64
    assert refused.value.status == 429
    limiter.check("2001:db8:1:3::1")  # the neighbouring /64 is another client


def test_the_client_table_has_a_hard_cap():
    limiter = ClientRateLimiter(per_minute=5, max_clients=50)
    for n in range(5000):  # all recent: none is idle, so the least recently seen make room
        limiter.check(f"2001:db8:{n // 65536:x}:{n % 65536:x}::1")
        assert len(limiter) <= 50
    limiter.check("198.51.100.1")
    assert len(limiter) <= 50
