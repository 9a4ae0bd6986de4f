"""The registration's pages, rendered without a server: every language from the shared catalogs,
right-to-left for Arabic, the city's identity and privacy link, escaping, nothing from elsewhere."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from services.registration import pages
from services.registration.config import RegistrationSettings
from services.registration.service import PageView
from shared import events as ev
from shared.languages import LANGUAGES
from shared.pages import CSS, CSS_SOURCE, PAGE_CSP, Frame, Identity, not_found_page

IDENTITY = Identity.of(RegistrationSettings())
WAITLISTED = {
    "de": "Alle Plätze sind vergeben. Sie stehen auf der Warteliste, Platz 3.",
    "en": "All seats are taken. You are on the waiting list, position 3.",
    "ar": "جميع المقاعد محجوزة. أنت في قائمة الانتظار، المركز 3.",
}


def view(status: str = "pending_confirmation", title: str = "Sprachförderung", **changes) -> PageView:
    meetings = (
        ev.MeetingInfo(
            number=1,
            starts_at=datetime(2026, 3, 4, 17, 0, tzinfo=UTC),
            ends_at=datetime(2026, 3, 4, 19, 0, tzinfo=UTC),
            venue="Rathaus, Großer Saal",
            address="Willy-Brandt-Platz 1",
        ),
        ev.MeetingInfo(number=2, venue="Stadtteiltreff", cancelled=True),
    )
    return PageView(
        "active", "de", uuid.uuid4(), status, changes.pop("position", None), "Ayşe", title, meetings
    )


def frame(lang: str) -> Frame:
    return Frame(lang, IDENTITY, pages.STATUS, {"token": "T0123456789"})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_pages_speak_the_language_show_the_city_and_escape(lang: str) -> None:
    f = frame(lang)
    confirm = pages.confirm_page(f, view(title="<b>Sprachförderung</b>"), "T0123456789", 48)
    status = pages.status_page(f, view("waitlisted", position=3), "T0123456789")
    cancel = pages.cancel_page(f, view("confirmed"), "T0123456789")
    gone = pages.cancelled_page(f)
    unknown = not_found_page(f)
    direction = "rtl" if lang == "ar" else "ltr"
    for page in (confirm, status, cancel, gone, unknown):
        assert f'<html lang="{lang}" dir="{direction}">' in page
        assert IDENTITY.office_name in page and IDENTITY.office_address in page
        assert IDENTITY.office_phone in page and IDENTITY.office_email in page
        assert f'href="{IDENTITY.privacy_url}"' in page
        assert (
            "<script" not in page
            and "style=" not in page
            and "http" not in page.replace(IDENTITY.privacy_url, "")
        )
        # the language switch keeps the token
        assert 'hreflang="ar"' in page and "token=T0123456789&amp;lang=uk" in page
    assert "<b>" not in confirm and "&lt;b&gt;Sprachförderung&lt;/b&gt;" in confirm
    assert 'name="token" value="T0123456789"' in confirm and 'action="/v1/registrations/confirm"' in confirm
    assert 'action="/v1/registrations/cancel"' in cancel
    assert "Rathaus, Großer Saal" in status and "/v1/registrations/cancel?token=T0123456789" in status
    assert len({confirm, status, cancel, gone, unknown}) == 5
    if lang != "de":
        assert not_found_page(f) != not_found_page(frame("de"))
    if lang in WAITLISTED:
        notice = pages.confirmed_notice(f, view("waitlisted", position=3))
        assert notice == WAITLISTED[lang]


def test_the_calendar_is_offered_once_confirmed_with_dates() -> None:
    f = frame("de")
    assert "calendar.ics?token=T0123456789" in pages.status_page(f, view("confirmed"), "T0123456789")
    assert "calendar.ics" not in pages.status_page(f, view("waitlisted", position=1), "T0123456789")
    dated = pages.status_page(f, view("confirmed"), "T0123456789")
    assert "Mittwoch, 4. März 2026, 18:00–20:00" in dated  # Berlin time
    assert "Dieser Termin fällt aus." in dated


def test_the_stylesheet_is_the_only_thing_the_policy_allows() -> None:
    page = pages.cancelled_page(frame("de"))
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert styles == [CSS]
    assert f"style-src '{CSS_SOURCE}'" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP
    assert "default-src 'none'" in PAGE_CSP and "script-src" not in PAGE_CSP


def test_unknown_language_gets_the_german_page() -> None:
    from shared.pages import chosen_language

    assert chosen_language(None, "fr") == "de"
    assert "Dieser Link ist unbekannt oder abgelaufen." in not_found_page(frame(chosen_language(None, "fr")))


ERASURE_BUTTON = {"de": "Daten jetzt löschen", "en": "Delete my data now", "uk": "Видалити мої дані"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_erasure_pages_speak_the_language(lang: str) -> None:
    f = frame(lang)
    page = pages.erasure_page(f, "T0123456789")
    started = pages.erasure_status_page(f, "erasing", "/v1/privacy/erasure-requests/x?token=T0123456789")
    done = pages.erasure_status_page(f, "completed")
    direction = "rtl" if lang == "ar" else "ltr"
    for html in (page, started, done):
        assert f'<html lang="{lang}" dir="{direction}">' in html
        assert f'href="{IDENTITY.privacy_url}"' in html
    assert 'name="token" value="T0123456789"' in page and "<form" not in started
    assert "/v1/privacy/erasure-requests/x?token=T0123456789" in started and started != done
    if lang != "de":
        assert page != pages.erasure_page(frame("de"), "T0123456789")
    if lang in ERASURE_BUTTON:
        assert ERASURE_BUTTON[lang] in page
