"""A resident's journey: register, confirm (or the waitlist), status, cancel; the links in mails."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.registration import service
from services.registration.schemas import RegistrationRequest
from tests.conftest import registration_body
from tests.registration.support import events_of, latest_token, pending_tokens, register, seat_state
from tests.support.staff import auth


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
            session, registration_settings, api.runtime.catalog, request, now=long_ago
        )
    token = await latest_token(api.runtime, reg_id)
    response = await api.post("/v1/registrations/confirm", json={"token": token})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_double_clicks_on_one_confirm_link_take_one_seat(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=3)
    [token] = await pending_tokens(api, registration_settings, wg, 1)
    answers = await asyncio.gather(
        *(api.post("/v1/registrations/confirm", json={"token": token}) for _ in range(8))
    )
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["status"] for a in answers} == {"confirmed"}
    state = await seat_state(api.runtime, wg)
    assert state["confirmed"] == 1 == state["counter"]
    assert (
        len(await events_of(api.runtime, "registration.confirmed", registration_id=answers[0].json()["id"]))
        == 1
    )


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
