"""The link "your registration": a browser gets the page, an API client JSON as API.md says; the page
carries no e-mail address, and its answer allows nothing but its own stylesheet."""

from __future__ import annotations

from shared.pages import PAGE_CSP
from tests.registration.support import latest_token, register

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_a_browser_gets_the_page_and_an_api_client_json(api, make_working_group) -> None:
    wg = await make_working_group(api.runtime)
    registration_id, email = await register(api, wg, language="tr")
    token = await latest_token(api.runtime, registration_id)

    for accept in (
        {},
        {"Accept": "*/*"},
        {"Accept": "application/json"},
        {"Accept": "application/json, text/html;q=0.5"},
    ):
        answer = await api.get("/v1/registrations/me", params={"token": token}, headers=accept)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert answer.json()["email"] == email and answer.json()["status"] == "pending_confirmation"

    page = await api.get("/v1/registrations/me", params={"token": token}, headers=BROWSER)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="tr" dir="ltr">' in page.text and email not in page.text
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert (
        '<html lang="ar" dir="rtl">'
        in (
            await api.get("/v1/registrations/me", params={"token": token, "lang": "ar"}, headers=BROWSER)
        ).text
    )

    unknown = await api.get("/v1/registrations/me", params={"token": "x" * 43}, headers=BROWSER)
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    problem = await api.get("/v1/registrations/me", params={"token": "x" * 43})
    assert problem.status_code == 404 and problem.headers["content-type"] == "application/problem+json"
    # the calendar only for a confirmed registration
    assert (await api.get("/v1/registrations/me/calendar.ics", params={"token": token})).status_code == 404


async def test_the_forms_answer_in_the_language_they_were_shown_in(api, make_working_group) -> None:
    wg = await make_working_group(api.runtime)
    registration_id, _ = await register(api, wg, language="de")
    token = await latest_token(api.runtime, registration_id)
    confirmed = await api.post("/v1/registrations/confirm", data={"token": token, "lang": "uk"})
    assert confirmed.status_code == 200 and '<html lang="uk"' in confirmed.text
    cancelled = await api.post("/v1/registrations/cancel", data={"token": token, "lang": "ar"})
    assert '<html lang="ar" dir="rtl">' in cancelled.text and "Ayşe" not in cancelled.text
    again = await api.post("/v1/registrations/cancel", json={"token": token})
    assert again.json() == {"status": "cancelled"}
