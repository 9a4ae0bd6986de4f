"""The registration service as the city's web forms and staff use it: real Postgres and RabbitMQ."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select

from services.registration import service
from services.registration.app import create_app
from services.registration.models import audit_log, outbox, registrations, working_groups
from services.registration.schemas import RegistrationRequest
from shared.auth import mint_token
from tests.conftest import registration_body, running, unique_email


@pytest.fixture
async def api(registration_settings):
    app = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as client:
        client.runtime = app.state.runtime
        yield client


def auth(settings, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, 'tester@stadt', list(roles))}"}


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


# --- the catalog -------------------------------------------------------------------------------------------


async def test_catalog_is_seeded_from_the_announcement(api):
    groups = (await api.get("/v1/working-groups")).json()
    by_id = {g["id"]: g for g in groups}
    assert by_id["sprachfoerderung"]["title"] == "Sprachförderung"
    assert {g["title"] for g in groups} >= {
        "Bildung, Beruf, Arbeit, Übergang in Arbeit, Selbständigkeit",
        "Sprachförderung",
        "Begegnung, Toleranz, Sicherheit, Integrationsprobleme",
        "Ehrenamt, Partizipation",
        "Wohnbedarfe und Wohnraumversorgung",
    }
    first, second = by_id["sprachfoerderung"]["meetings"]
    # 06.03.2019, 18 Uhr in Berlin is 17:00 UTC.
    assert datetime.fromisoformat(first["starts_at"]) == datetime(2019, 3, 6, 17, 0, tzinfo=UTC)
    assert first["starts_at"] == "2019-03-06T18:00:00+01:00"  # as announced: 18 Uhr, Berlin time
    assert "blauer Salon" in first["venue"]
    assert second["starts_at"] is None
    wohnen = by_id["wohnbedarfe-wohnraumversorgung"]["meetings"][0]
    assert datetime.fromisoformat(wohnen["starts_at"]) == datetime(2019, 3, 7, 16, 0, tzinfo=UTC)
    assert (await api.get("/v1/working-groups/nope")).status_code == 404


# --- a resident's journey ---------------------------------------------------------------------------------------


async def test_register_confirm_status_cancel_and_the_waitlist_moves_up(api, make_working_group):
    wg = await make_working_group(api.runtime, capacity=1)
    first_id, first_email = await register(api, wg)
    second_id, _ = await register(api, wg, language="uk")
    first_token = await latest_token(api.runtime, first_id)
    second_token = await latest_token(api.runtime, second_id)

    page = await api.get("/v1/registrations/confirm", params={"token": first_token})
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    me = (await api.get("/v1/registrations/me", params={"token": first_token})).json()
    assert me["status"] == "pending_confirmation"  # the GET changed nothing

    confirmed = await api.post("/v1/registrations/confirm", json={"token": first_token})
    assert confirmed.status_code == 200 and confirmed.json() == {"id": first_id, "status": "confirmed"}
    again = await api.post("/v1/registrations/confirm", json={"token": first_token})
    assert again.status_code == 200 and again.json()["status"] == "confirmed"  # an already used link

    waitlisted = (await api.post("/v1/registrations/confirm", json={"token": second_token})).json()
    assert waitlisted == {"id": second_id, "status": "waitlisted", "waitlist_position": 1}
    ukrainian_page = await api.get("/v1/registrations/cancel", params={"token": second_token})
    assert 'lang="uk"' in ukrainian_page.text and "Скасувати" in ukrainian_page.text

    cancelled = await api.post("/v1/registrations/cancel", json={"token": first_token})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    promoted = await events_of(api.runtime, "registration.promoted", registration_id=second_id)
    assert len(promoted) == 1 and promoted[0]["recipient"]["language"] == "uk"
    assert promoted[0]["links"]["cancel_url"].startswith("http://forms.test/v1/registrations/cancel?token=")
    group = (await api.get(f"/v1/working-groups/{wg}")).json()
    assert (group["confirmed"], group["seats_left"], group["waitlisted"]) == (1, 0, 0)

    confirmed_events = await events_of(api.runtime, "registration.confirmed", registration_id=first_id)
    assert confirmed_events[0]["recipient"]["email"] == first_email
    assert [m["number"] for m in confirmed_events[0]["meetings"]] == [1, 2]  # both meetings


async def test_the_confirm_form_works_without_javascript(api, make_working_group):
    wg = await make_working_group(api.runtime, capacity=5)
    reg_id, _ = await register(api, wg, language="ar")
    token = await latest_token(api.runtime, reg_id)
    response = await api.post(
        "/v1/registrations/confirm",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert 'dir="rtl"' in response.text and "تم تأكيد تسجيلك" in response.text


async def test_unknown_and_expired_links_answer_404(api, make_working_group, registration_settings):
    assert (await api.post("/v1/registrations/confirm", json={"token": "x" * 43})).status_code == 404
    assert (await api.get("/v1/registrations/me", params={"token": "y" * 43})).status_code == 404
    wg = await make_working_group(api.runtime)
    request = RegistrationRequest(**registration_body(working_group_id=wg))
    long_ago = datetime.now(UTC) - timedelta(days=3)
    async with api.runtime.transaction() as session:
        reg_id = await service.submit_registration(
            session, registration_settings, service.catalog_of(api.runtime), request, now=long_ago
        )
    token = await latest_token(api.runtime, reg_id)
    response = await api.post("/v1/registrations/confirm", json={"token": token})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


# --- no enumeration, idempotency -------------------------------------------------------------------------------


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


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"privacy_consent": False}, "privacy_consent"),
        ({"privacy_consent": None}, "privacy_consent"),
        ({"working_group_id": "no-such-group"}, "working_group_id"),
        ({"language": "fr"}, "language"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b.org\r\nBcc: x@evil.org"}, "email"),
        ({"name": "x" * 500}, "name"),
        ({"name": "Eve\r\nBcc: victim@example.org"}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"name": "   "}, "name"),
        ({"participant_type": "admin"}, "participant_type"),
        ({"surprise": 1}, "surprise"),
        ({"accessibility_needs": "x" * 5000}, "accessibility_needs"),
    ],
)
async def test_bad_input_gets_422_problem_naming_the_field(api, change, field):
    body = {**registration_body(), **change}
    body = {k: v for k, v in body.items() if not (k == "privacy_consent" and v is None)}
    response = await api.post("/v1/registrations", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert field in [e["field"] for e in problem["errors"]]
    assert "Traceback" not in response.text


async def test_oversized_and_malformed_bodies(api):
    huge = await api.post(
        "/v1/registrations",
        content=b'{"name": "' + b"x" * 1_000_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("application/problem+json")
    broken = await api.post(
        "/v1/registrations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    wrong_type = await api.post(
        "/v1/registrations/confirm", content=b"token=1", headers={"Content-Type": "text/xml"}
    )
    assert wrong_type.status_code == 415
    bad_token = await api.post("/v1/registrations/confirm", json={"token": "a\nb"})
    assert bad_token.status_code == 422 and bad_token.json()["errors"][0]["field"] == "token"


async def test_public_registrations_are_rate_limited(registration_settings):
    app = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 3}))
    async with running(app) as client:
        codes = [
            (await client.post("/v1/registrations", json=registration_body())).status_code for _ in range(5)
        ]
    assert codes[:3] == [202, 202, 202] and codes[3:] == [429, 429]


# --- seats: no overbooking, ever -------------------------------------------------------------------------------


async def _pending(
    api, registration_settings, wg: str, n: int, participant_type: str = "resident"
) -> list[str]:
    tokens = []
    for _ in range(n):
        request = RegistrationRequest(
            **registration_body(working_group_id=wg, participant_type=participant_type)
        )
        async with api.runtime.transaction() as session:
            reg_id = await service.submit_registration(
                session, registration_settings, service.catalog_of(api.runtime), request
            )
        tokens.append(await latest_token(api.runtime, reg_id))
    return tokens


async def _seat_state(runtime, wg: str) -> dict:
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


async def test_200_confirmations_race_for_the_last_20_seats(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime, capacity=50)
    for token in await _pending(api, registration_settings, wg, 30):
        assert (await api.post("/v1/registrations/confirm", json={"token": token})).json()[
            "status"
        ] == "confirmed"
    tokens = await _pending(api, registration_settings, wg, 200)

    answers = await asyncio.gather(
        *(api.post("/v1/registrations/confirm", json={"token": t}) for t in tokens)
    )
    assert all(a.status_code == 200 for a in answers)
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("confirmed") == 20 and statuses.count("waitlisted") == 180
    state = await _seat_state(api.runtime, wg)
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
    confirmed = await _pending(api, registration_settings, wg, 10)
    for token in confirmed:
        await api.post("/v1/registrations/confirm", json={"token": token})
    pending = await _pending(api, registration_settings, wg, 20)
    admin = auth(registration_settings, "admin")

    await asyncio.gather(
        *(api.post("/v1/registrations/cancel", json={"token": t}) for t in confirmed[:5]),
        *(api.post("/v1/registrations/confirm", json={"token": t}) for t in pending),
        api.patch(f"/v1/working-groups/{wg}", json={"capacity": 15}, headers=admin),
    )
    state = await _seat_state(api.runtime, wg)
    # 5 still confirmed from before + 20 new = 25 active for 15 seats.
    assert state["capacity"] == 15
    assert state["confirmed"] == 15 == state["counter"]
    assert state["waitlisted"] == 10
    assert state["cancelled"] == 5


async def test_raising_capacity_promotes_and_expert_reservation_is_respected(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=2, expert_reserved=1)
    residents = await _pending(api, registration_settings, wg, 2)
    experts = await _pending(api, registration_settings, wg, 2, participant_type="expert")
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


# --- staff ---------------------------------------------------------------------------------------------------------


async def test_staff_endpoints_need_the_right_role(api, registration_settings):
    wg = "sprachfoerderung"
    assert (await api.get(f"/v1/working-groups/{wg}/participants")).status_code == 401
    bad = {"Authorization": "Bearer not.a.token"}
    assert (await api.get(f"/v1/working-groups/{wg}/participants", headers=bad)).status_code == 401
    staff = auth(registration_settings, "staff")
    assert (await api.get(f"/v1/working-groups/{wg}/participants", headers=staff)).status_code == 200
    assert (
        await api.patch(f"/v1/working-groups/{wg}", json={"capacity": 40}, headers=staff)
    ).status_code == 403
    expired = mint_token(registration_settings, "x", ["admin"], ttl=timedelta(seconds=-5))
    response = await api.patch(
        f"/v1/working-groups/{wg}", json={"capacity": 40}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401 and response.headers["content-type"].startswith(
        "application/problem+json"
    )


async def test_participant_list_csv_and_planning_figures(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime, capacity=2)
    bodies = [
        {"name": '=HYPERLINK("http://evil")', "district": "Innenstadt Ost", "interpretation_language": "ar"},
        {"name": "Олена Коваленко", "language": "uk", "accessibility_needs": "Rollstuhl"},
        {"name": "Third Person", "participant_type": "expert"},
    ]
    for extra in bodies:
        reg_id, _ = await register(api, wg, **extra)
        await api.post("/v1/registrations/confirm", json={"token": await latest_token(api.runtime, reg_id)})
    staff = auth(registration_settings, "staff")
    people = (await api.get(f"/v1/working-groups/{wg}/participants", headers=staff)).json()
    assert [p["status"] for p in people] == ["confirmed", "confirmed", "waitlisted"]
    assert people[2]["waitlist_position"] == 1

    response = await api.get(f"/v1/working-groups/{wg}/participants", params={"format": "csv"}, headers=staff)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff")), delimiter=";"))
    names = [r["name"] for r in rows]
    assert "Олена Коваленко" in names
    assert '\'=HYPERLINK("http://evil")' in names  # defused formula

    async with api.runtime.transaction() as session:
        reads = (
            await session.execute(
                select(audit_log.c.subject, audit_log.c.action).where(audit_log.c.target == wg)
            )
        ).all()
    assert [tuple(r) for r in reads] == [("tester@stadt", "participants.read")] * 2

    planning = (await api.get(f"/v1/working-groups/{wg}/planning", headers=staff)).json()
    figures = planning["meetings"][0]["figures"]
    assert figures["confirmed"]["total"]["all"] == 2
    assert figures["confirmed"]["language"] == {"de": 1, "uk": 1}
    assert figures["confirmed"]["interpretation_language"] == {"ar": 1}
    assert figures["confirmed"]["accessibility_needs"]["with_needs"] == 1
    assert figures["waitlisted"]["participant_type"] == {"expert": 1}


async def test_changing_a_meeting_tells_every_confirmed_participant(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=5)
    ids = []
    for _ in range(2):
        reg_id, _ = await register(api, wg)
        await api.post("/v1/registrations/confirm", json={"token": await latest_token(api.runtime, reg_id)})
        ids.append(reg_id)
    await register(api, wg)  # pending: not told
    admin = auth(registration_settings, "admin")
    new_start = "2019-04-10T18:00:00+02:00"
    response = await api.patch(
        f"/v1/working-groups/{wg}/meetings/2",
        json={"starts_at": new_start, "venue": "Villa Jaenisch", "address": "Kaiserslautern"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["meetings"][1]["venue"] == "Villa Jaenisch"
    events = await events_of(api.runtime, "meeting.rescheduled")
    mine = [e for e in events if e["working_group"]["id"] == wg]
    assert len(mine) == 1
    assert sorted(p["registration_id"] for p in mine[0]["participants"]) == sorted(ids)
    assert mine[0]["meeting"]["sequence"] == 1
    assert datetime.fromisoformat(mine[0]["meeting"]["starts_at"]) == datetime.fromisoformat(new_start)

    cancel = await api.patch(f"/v1/working-groups/{wg}/meetings/2", json={"cancelled": True}, headers=admin)
    assert cancel.status_code == 200
    cancelled = [
        e for e in await events_of(api.runtime, "meeting.cancelled") if e["working_group"]["id"] == wg
    ]
    assert len(cancelled) == 1 and cancelled[0]["meeting"]["sequence"] == 2
    bad = await api.patch(
        f"/v1/working-groups/{wg}/meetings/2", json={"starts_at": "2019-04-10T18:00:00"}, headers=admin
    )
    assert bad.status_code == 422  # a time without offset is ambiguous


# --- jobs ------------------------------------------------------------------------------------------------------------


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
            service.catalog_of(api.runtime),
            request,
            now=datetime.now(UTC) - timedelta(hours=49),
        )
    async with api.runtime.transaction() as session:
        assert (
            await service.expire_unconfirmed(session, registration_settings, service.catalog_of(api.runtime))
            >= 1
        )
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
            await service.send_due_reminders(session, registration_settings)

    for _ in range(3):
        await asyncio.gather(run_job(api.runtime), run_job(other.state.runtime))
    await other.state.runtime.engine.dispose()
    reminders = [
        e for e in await events_of(api.runtime, "meeting.reminder_due") if e["working_group"]["id"] == wg
    ]
    assert len(reminders) == 1
    assert len(reminders[0]["participants"]) == 3
    assert reminders[0]["meeting"]["number"] == 1


async def test_double_clicks_on_one_confirm_link_take_one_seat(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=3)
    [token] = await _pending(api, registration_settings, wg, 1)
    answers = await asyncio.gather(
        *(api.post("/v1/registrations/confirm", json={"token": token}) for _ in range(8))
    )
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["status"] for a in answers} == {"confirmed"}
    state = await _seat_state(api.runtime, wg)
    assert state["confirmed"] == 1 == state["counter"]
    assert (
        len(await events_of(api.runtime, "registration.confirmed", registration_id=answers[0].json()["id"]))
        == 1
    )


async def test_changing_the_expert_reservation_never_overbooks(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=2)
    for token in await _pending(api, registration_settings, wg, 2):
        await api.post("/v1/registrations/confirm", json={"token": token})
    admin = auth(registration_settings, "admin")
    assert (
        await api.patch(f"/v1/working-groups/{wg}", json={"expert_reserved": 1}, headers=admin)
    ).status_code == 200
    [expert] = await _pending(api, registration_settings, wg, 1, participant_type="expert")
    answer = (await api.post("/v1/registrations/confirm", json={"token": expert})).json()
    assert answer["status"] == "waitlisted"
    state = await _seat_state(api.runtime, wg)
    assert state["confirmed"] == 2 == state["counter"] == state["capacity"]


async def test_a_form_with_too_many_fields_is_a_422_not_a_500(api):
    body = "&".join(f"f{i}=x" for i in range(7))
    response = await api.post(
        "/v1/registrations/confirm",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422


async def test_links_in_earlier_mails_keep_working(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime, capacity=5)
    reg_id, email = await register(api, wg)
    first_mail_token = await latest_token(api.runtime, reg_id)
    await api.post("/v1/registrations/confirm", json={"token": first_mail_token})
    # Later mails: a meeting change, registering again with the same address.
    admin = auth(registration_settings, "admin")
    await api.patch(f"/v1/working-groups/{wg}/meetings/2", json={"venue": "Villa Jaenisch"}, headers=admin)
    await api.post("/v1/registrations", json=registration_body(working_group_id=wg, email=email))
    assert await latest_token(api.runtime, reg_id) == first_mail_token
    again = await api.post("/v1/registrations/confirm", json={"token": first_mail_token})
    assert again.status_code == 200 and again.json()["status"] == "confirmed"
    assert (await api.post("/v1/registrations/cancel", json={"token": first_mail_token})).json()[
        "status"
    ] == "cancelled"
    after = await api.post("/v1/registrations/confirm", json={"token": first_mail_token})
    assert after.status_code == 200 and after.json()["status"] == "cancelled"


async def test_a_confirmation_right_after_a_meeting_change_on_another_replica_carries_the_new_date(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=5)
    other = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(other) as replica:
        tokens = await _pending(api, registration_settings, wg, 2)
        # The replica caches the catalog entry while confirming the first person.
        await replica.post("/v1/registrations/confirm", json={"token": tokens[0]})
        admin = auth(registration_settings, "admin")
        moved = "2019-05-02T17:00:00+02:00"
        # Changed through the other replica: this one's cache still holds the old entry.
        await api.patch(f"/v1/working-groups/{wg}/meetings/2", json={"starts_at": moved}, headers=admin)
        answer = await replica.post("/v1/registrations/confirm", json={"token": tokens[1]})
        assert answer.json()["status"] == "confirmed"
        [event] = await events_of(api.runtime, "registration.confirmed", registration_id=answer.json()["id"])
        second = next(m for m in event["meetings"] if m["number"] == 2)
        assert datetime.fromisoformat(second["starts_at"]) == datetime.fromisoformat(moved)


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
        await service.send_due_reminders(session, registration_settings)

    # The slower replica works from the list it read before the first one committed.
    async def stale_candidates(*_args):
        return seen_by_both

    monkeypatch.setattr(repository, "meetings_due_for_reminder", stale_candidates)
    async with api.runtime.transaction() as session:
        assert await service.send_due_reminders(session, registration_settings) == 0
    reminders = [
        e for e in await events_of(api.runtime, "meeting.reminder_due") if e["working_group"]["id"] == wg
    ]
    assert len(reminders) == 1


async def test_staff_changes_are_audited_and_the_audit_log_cannot_be_rewritten(
    api, make_working_group, registration_settings
):
    from sqlalchemy.exc import DBAPIError

    wg = await make_working_group(api.runtime, capacity=5)
    admin = auth(registration_settings, "admin")
    await api.patch(f"/v1/working-groups/{wg}", json={"capacity": 6}, headers=admin)
    async with api.runtime.transaction() as session:
        [entry] = (await session.execute(select(audit_log).where(audit_log.c.target == wg))).all()
    assert (entry.subject, entry.action, entry.details["capacity"]) == (
        "tester@stadt",
        "working_group.changed",
        6,
    )
    with pytest.raises(DBAPIError, match="permission denied"):
        async with api.runtime.transaction() as session:
            await session.execute(
                audit_log.update().where(audit_log.c.id == entry.id).values(subject="someone else")
            )
    with pytest.raises(DBAPIError, match="permission denied"):
        async with api.runtime.transaction() as session:
            await session.execute(audit_log.delete().where(audit_log.c.id == entry.id))
