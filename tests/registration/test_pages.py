"""The pages behind the mail links, from the shared catalogs: every language, right-to-left, escaping."""

from __future__ import annotations

import pytest

from services.registration import pages
from shared.events import LANGUAGES

WAITLISTED = {
    "de": "Alle Plätze sind vergeben. Sie stehen auf der Warteliste, Platz 3.",
    "en": "All seats are taken. You are on the waiting list, position 3.",
    "ar": "جميع المقاعد محجوزة. أنت في قائمة الانتظار، المركز 3.",
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_pages_speak_the_language_and_escape_the_title(lang: str) -> None:
    confirm = pages.action_page(lang, "confirm", "<b>Sprachförderung</b>", "/v1/registrations/confirm", "T")
    cancel = pages.action_page(lang, "cancel", "Sprachförderung", "/v1/registrations/cancel", "T")
    direction = "rtl" if lang == "ar" else "ltr"
    for page in (confirm, cancel):
        assert f'<html lang="{lang}" dir="{direction}">' in page
        assert 'name="token" value="T"' in page
    assert "<b>" not in confirm and "&lt;b&gt;Sprachförderung&lt;/b&gt;" in confirm
    assert "Sprachförderung" in cancel
    texts = {
        pages.result_page(lang, {"status": "confirmed"}),
        pages.result_page(lang, {"status": "waitlisted", "waitlist_position": 3}),
        pages.result_page(lang, {"status": "cancelled"}),
        pages.not_found_page(lang),
    }
    assert len(texts) == 4
    if lang != "de":
        assert pages.not_found_page(lang) != pages.not_found_page("de")
    if lang in WAITLISTED:
        assert WAITLISTED[lang] in pages.result_page(lang, {"status": "waitlisted", "waitlist_position": 3})


def test_unknown_language_gets_the_german_page() -> None:
    assert pages.not_found_page("fr") == pages.not_found_page("de")
    assert "Dieser Link ist unbekannt oder abgelaufen." in pages.not_found_page("fr")


ERASURE_BUTTON = {"de": "Daten jetzt löschen", "en": "Delete my data now", "uk": "Видалити мої дані"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_erasure_pages_speak_the_language(lang: str) -> None:
    page = pages.erasure_page(lang, "/v1/privacy/erasure-requests/confirm", "T")
    started = pages.erasure_started_page(lang)
    direction = "rtl" if lang == "ar" else "ltr"
    for html in (page, started):
        assert f'<html lang="{lang}" dir="{direction}">' in html
    assert 'name="token" value="T"' in page and "<form" not in started
    if lang != "de":
        assert page != pages.erasure_page("de", "/v1/privacy/erasure-requests/confirm", "T")
        assert started != pages.erasure_started_page("de")
    if lang in ERASURE_BUTTON:
        assert ERASURE_BUTTON[lang] in page
