"""Issue 24: the pages after the meetings in headless Chromium at phone width, checked like the resident
pages (key facts, office and privacy link, fits the screen, 44 px targets, focus ring, no CSP complaint, no
serious or critical axe violation): the published minutes in each of the six languages, and the staff's
attendance list for a clipboard (German, opened with a staff token)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from services.registration.app import create_app as registration_app
from shared.languages import LANGUAGES
from tests.browser.conftest import Served, served
from tests.browser.test_resident_pages import Browser, p, register, working_group
from tests.support.staff import auth

pytestmark = pytest.mark.browser

MINUTES_MD = """# Ergebnisse des ersten Termins

- Ein **Sprachcafé** im Stadtteiltreff, ab Herbst
- Mehr Beratung in [einfacher Sprache](https://www.kaiserslautern.de/integration)

<script>alert(1)</script>
"""


@pytest.fixture(scope="module")
async def site(registration_settings) -> AsyncIterator[Served]:
    app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with served(app) as served_site:
        yield served_site


@pytest.fixture(scope="module")
async def meeting_with_minutes(site, registration_settings) -> tuple[str, str]:
    wg_id, title = await working_group(site, capacity=20)
    staff = auth(registration_settings, "staff")
    async with httpx.AsyncClient(base_url=site.base_url, headers=staff) as client:
        for version in ("Erste Fassung.", MINUTES_MD):
            answer = await client.put(
                f"/v1/working-groups/{wg_id}/meetings/1/minutes",
                json={"summary_md": version, "document_url": "https://example.org/p.pdf", "publish": True},
            )
            assert answer.status_code == 200, answer.text
    return wg_id, title


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_minutes_page(site, meeting_with_minutes, browser, lang) -> None:
    wg_id, title = meeting_with_minutes
    web = Browser(browser)
    await web.open(f"{site.base_url}/v1/working-groups/{wg_id}/meetings/1/minutes?lang={lang}")
    visible = await web.check(
        "minutes",
        lang,
        [
            title,
            "Ergebnisse des ersten Termins",
            "Sprachcafé",
            p(lang, "The full document"),
            p(lang, "Earlier versions"),
            p(lang, "Version %(version)s", version=2),
        ],
    )
    assert "alert(1)" in visible  # typed HTML is shown as text, never run


async def test_the_attendance_list_for_a_clipboard(site, browser, registration_settings) -> None:
    wg_id, title = await working_group(site, capacity=20)
    staff = auth(registration_settings, "staff")
    token = await register(site, wg_id, "de")
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        await client.post("/v1/registrations/confirm", json={"token": token})
        await client.post(
            f"/v1/working-groups/{wg_id}/meetings/1/attendance",
            json={"walk_in": {"participant_type": "resident", "language": "tr"}},
            headers=staff,
        )
    await asyncio.to_thread(browser.execute_cdp_cmd, "Network.enable", {})
    await asyncio.to_thread(browser.execute_cdp_cmd, "Network.setExtraHTTPHeaders", {"headers": staff})
    try:
        web = Browser(browser)
        await web.open(f"{site.base_url}/v1/working-groups/{wg_id}/meetings/1/attendance")
        await web.check("attendance", "de", [title, "Ayşe Yılmaz", "Unterschrift", "Ohne Anmeldung: 1."])
    finally:
        await asyncio.to_thread(browser.execute_cdp_cmd, "Network.setExtraHTTPHeaders", {"headers": {}})
