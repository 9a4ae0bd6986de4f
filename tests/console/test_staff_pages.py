"""The office's pages through the console, as staff use them: an admin changes a working group's capacity
and a meeting, staff read the participants and the mail log of one address, an admin starts an erasure
that came by letter, moderators keep text blocks and download the council report; every change needs the
role (the console's check, and the service's behind it) and the form's CSRF token."""

from __future__ import annotations

import httpx
import pytest

from tests.console.conftest import StaffClient, System, unique, working_group


@pytest.fixture
async def signed_in(system: System):
    clients: list[StaffClient] = []

    async def make(*roles: str) -> StaffClient:
        subject = unique("-".join(roles))
        system.set_user(subject, f"Person {subject}", list(roles))
        client = StaffClient(system)
        clients.append(client)
        await client.sign_in(subject)
        return client

    yield make
    for client in clients:
        await client.close()


async def _group(system: System, wg: str) -> dict:
    async with httpx.AsyncClient(base_url=system.registration.base_url) as public:
        return (await public.get(f"/v1/working-groups/{wg}")).json()


async def test_an_admin_changes_capacity_and_a_meeting_staff_may_not(system: System, signed_in) -> None:
    wg = await working_group(system, "Wohnen und Nachbarschaft")
    admin = await signed_in("admin")
    page = f"/groups/{wg}"
    answer = await admin.post(f"{page}/capacity", {"csrf": await admin.csrf(page), "capacity": "45"})
    assert answer.status_code == 303 and "saved=1" in answer.headers["location"]
    answer = await admin.post(
        f"{page}/meetings/1",
        {"csrf": await admin.csrf(page), "starts_at": "2027-03-03T18:00", "ends_at": "2027-03-03T20:00",
         "venue": "Stadtteilbüro Grübentälchen", "address": "Pfaffstraße 3"},
    )  # fmt: skip
    assert answer.status_code == 303 and "saved=1" in answer.headers["location"]
    group = await _group(system, wg)
    assert group["capacity"] == 45
    meeting = group["meetings"][0]
    assert meeting["venue"] == "Stadtteilbüro Grübentälchen" and meeting["starts_at"].startswith(
        "2027-03-03T18:00"
    )
    shown = await admin.get(page)
    assert "Stadtteilbüro Grübentälchen" in shown.text and "45" in shown.text

    staff = await signed_in("staff")
    view = await staff.get(page)
    assert view.status_code == 200 and "Teilnehmende" in view.text and 'name="capacity"' not in view.text
    refused = await staff.post(f"{page}/capacity", {"csrf": await staff.csrf(page), "capacity": "1"})
    assert refused.status_code == 403
    assert (await _group(system, wg))["capacity"] == 45


async def test_the_mail_log_of_one_address_is_asked_by_post(system: System, signed_in) -> None:
    staff = await signed_in("staff")
    address = f"{unique('niemand')}@example.org"
    answer = await staff.post("/mail", {"csrf": await staff.csrf("/mail"), "address": address})
    assert (
        answer.status_code == 200
        and address in answer.text
        and "Keine Mails an diese Adresse." in answer.text
    )
    wrong = await staff.post("/mail", {"csrf": await staff.csrf("/mail"), "address": "not an address"})
    assert wrong.status_code == 422
    moderator = await signed_in("moderator")
    assert (await moderator.get("/mail")).status_code == 403


async def test_an_erasure_by_letter_needs_an_admin(system: System, signed_in) -> None:
    staff = await signed_in("staff")
    form = {"email": f"{unique('brief')}@example.org", "reference": "Schreiben vom 1. Dezember"}
    refused = await staff.post("/mail/erasures", {**form, "csrf": await staff.csrf("/mail")})
    assert refused.status_code == 403
    admin = await signed_in("admin")
    started = await admin.post("/mail/erasures", {**form, "csrf": await admin.csrf("/mail")})
    assert started.status_code == 200 and "Löschung gestartet" in started.text


async def test_text_blocks_and_the_council_report_are_the_moderators(system: System, signed_in) -> None:
    moderator = await signed_in("moderator")
    title = unique("Ort fehlt")
    added = await moderator.post(
        "/text-blocks",
        {
            "csrf": await moderator.csrf("/text-blocks"),
            "language": "tr",
            "title": title,
            "body": "Lütfen bir yer belirtin.",
        },
    )
    assert added.status_code == 303
    listed = await moderator.get("/text-blocks")
    assert title in listed.text and "Lütfen bir yer belirtin." in listed.text
    report = await moderator.get("/reports/council.csv")
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    staff = await signed_in("staff")
    assert (await staff.get("/text-blocks")).status_code == 403
    assert (await staff.get("/reports/council.csv")).status_code == 403


async def test_the_language_switch(system: System, signed_in) -> None:
    staff = await signed_in("staff")
    assert "Übersicht" in (await staff.get("/")).text
    switched = await staff.post(
        "/language", {"csrf": await staff.csrf("/"), "language": "en", "back": "/mail"}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/mail"
    page = await staff.get("/mail")
    assert '<html lang="en"' in page.text and "Bounced recently" in page.text
    elsewhere = await staff.post(
        "/language", {"csrf": await staff.csrf("/"), "language": "de", "back": "//evil.example"}
    )
    assert elsewhere.headers["location"] == "/"
