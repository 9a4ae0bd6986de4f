"""The calendar entry is in the person's language: the download on the registration's page in the
registration's language, the mail's attachment in the mail's (one catalog entry, context ``calendar``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from services.notification.calendar import calendar_for
from services.notification.samples import sample_context
from tests.registration.support import latest_token, register

SUMMARIES = {
    "de": "Arbeitskreis {title} – {number}. Termin",
    "en": "Working group {title} – meeting {number}",
    "tr": "{title} çalışma grubu – {number}. toplantı",
    "ar": "مجموعة العمل {title} – الاجتماع {number}",
}


def summaries(data: bytes) -> list[str]:
    return [str(vevent["SUMMARY"]) for vevent in Calendar.from_ical(data).walk("VEVENT")]


@pytest.mark.parametrize("language", ["tr", "ar"])
async def test_the_calendar_download_speaks_the_registrations_language(api, make_working_group, language):
    wg = await make_working_group(api.runtime, starts_at=datetime.now(UTC) + timedelta(days=30))
    registration_id, _ = await register(api, wg, language=language)
    token = await latest_token(api.runtime, registration_id)
    assert (await api.post("/v1/registrations/confirm", json={"token": token})).json()[
        "status"
    ] == "confirmed"

    ics = await api.get("/v1/registrations/me/calendar.ics", params={"token": token})
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    # Only the dated meeting is an entry.
    assert summaries(ics.content) == [SUMMARIES[language].format(title=f"Testkreis {wg}", number=1)]


@pytest.mark.parametrize("language", sorted(SUMMARIES))
def test_the_mails_calendar_speaks_the_mails_language(language: str) -> None:
    context = sample_context("registration_confirmed")
    assert context is not None
    part = calendar_for("registration_confirmed", context, language)
    assert part is not None
    title = context["working_group"]["title"]
    expected = [
        SUMMARIES[language].format(title=title, number=m["number"])
        for m in context["meetings"]
        if m.get("starts_at")
    ]
    assert summaries(part.data) == expected


def test_a_language_without_a_catalog_gets_the_german_entry() -> None:
    context = sample_context("registration_confirmed")
    assert context is not None
    part = calendar_for("registration_confirmed", context, "fr")
    assert part is not None
    assert summaries(part.data)[0].startswith("Arbeitskreis ")
