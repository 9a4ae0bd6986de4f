"""Every link in a mail, opened as a resident would: in headless Chromium at phone width (390 × 844), in
each of the six languages. Each page shows its key facts, the city's office and the privacy link,
fits the screen, has touch targets of at least 44 px and a visible focus, runs without a single
Content-Security-Policy complaint, and axe-core finds no serious or critical violation. The changes
are made as a person makes them: with the page's buttons (form posts, no JavaScript).

Screenshots of the Arabic and German pages land in ``var/screenshots/`` with ``axe-results.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import insert, select

from services.proposals.app import create_app as proposals_app
from services.proposals.models import working_groups as proposal_working_groups
from services.registration.app import create_app as registration_app
from services.registration.models import meetings, outbox, working_groups
from shared import i18n
from shared.languages import LANGUAGES
from shared.pages import Frame, Identity
from shared.tokens import token_for
from tests.browser.conftest import PHONE, SCREENSHOTS, Served, served
from tests.conftest import registration_body, unique_email
from tests.proposals.conftest import proposal_body, staff_headers
from tests.registration.support import latest_token

pytestmark = pytest.mark.browser
RESULTS: dict[str, dict[str, Any]] = {}
MEETING_1 = datetime.now(UTC).replace(hour=16, minute=0, second=0, microsecond=0) + timedelta(days=30)
MEETING_2 = MEETING_1 + timedelta(days=14)

# Interactive elements smaller than 44 × 44 px (hidden inputs are not displayed and so not counted).
SMALL_TARGETS = """
return [...document.querySelectorAll('a[href], button, input, select, textarea')]
  .filter(e => e.offsetParent !== null)
  .map(e => [e.outerHTML.slice(0, 80), e.getBoundingClientRect()])
  .filter(([_, r]) => r.height < 44 || r.width < 44)
  .map(([html, r]) => `${html} ${Math.round(r.width)}x${Math.round(r.height)}`);
"""
FOCUS_RING = """
const links = [...document.querySelectorAll('a[href], button')].filter(e => e.offsetParent !== null);
links[0].focus({focusVisible: true});
const style = getComputedStyle(document.activeElement);
return [style.outlineStyle, style.outlineWidth, style.boxShadow];
"""


def p(lang: str, message: str, **values: Any) -> str:
    return Frame(lang, IDENTITY).pgettext("page", message, **values)


def _settings_identity() -> Identity:
    from services.registration.config import RegistrationSettings

    return Identity.of(RegistrationSettings())


IDENTITY = _settings_identity()


class Browser:
    """The blocking Selenium calls, run in a thread so the served apps keep answering."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def open(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        def click() -> None:
            from selenium.common.exceptions import WebDriverException
            from selenium.webdriver.support.wait import WebDriverWait

            d = self.driver
            d.execute_script("window.mitwirkungOldPage = true")  # gone once the next page is loaded
            d.find_element(By.CSS_SELECTOR, css).click()
            WebDriverWait(d, 30, ignored_exceptions=(WebDriverException,)).until(
                lambda d: d.execute_script(
                    "return window.mitwirkungOldPage === undefined && document.readyState === 'complete'"
                )
            )

        await asyncio.to_thread(click)

    async def type_into(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        def type_() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(text)

        await asyncio.to_thread(type_)

    async def check(self, page: str, lang: str, facts: list[str]) -> str:
        return await asyncio.to_thread(self._check, page, lang, facts)

    def _check(self, page: str, lang: str, facts: list[str]) -> str:
        from axe_selenium_python import Axe
        from selenium.webdriver.common.by import By

        d = self.driver
        html = d.find_element(By.TAG_NAME, "html")
        assert html.get_attribute("lang") == lang, (page, lang)
        assert html.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
        visible = d.find_element(By.TAG_NAME, "body").text
        for fact in [*facts, IDENTITY.office_name, IDENTITY.office_phone, p(lang, "Privacy notice")]:
            assert fact in visible, f"{page}/{lang}: {fact!r} not visible in:\n{visible}"
        privacy = d.find_element(By.CSS_SELECTOR, f'footer a[href="{IDENTITY.privacy_url}"]')
        assert privacy.is_displayed()
        assert d.execute_script("return window.innerWidth") == PHONE["width"]
        assert d.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"], page
        assert d.execute_script(SMALL_TARGETS) == [], page
        outline, width, shadow = d.execute_script(FOCUS_RING)
        assert outline == "solid" and width == "3px" and shadow != "none", (page, outline, width, shadow)
        assert d.execute_script("return document.scripts.length") == 0

        axe = Axe(d)
        axe.inject()
        results = axe.run()
        serious = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{page}/{lang}: " + axe.report(serious)
        complaints = [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]]
        assert complaints == [], complaints
        RESULTS[f"{page}/{lang}"] = {
            "url": d.current_url.split("?")[0],
            "violations": {v["id"]: v["impact"] for v in results["violations"]},
            "passes": len(results["passes"]),
            "axe": d.execute_script("return axe.version"),
        }
        if lang in ("ar", "de"):
            self._screenshot(f"{page}-{lang}")
        return visible

    def _screenshot(self, name: str) -> None:
        d = self.driver
        height = d.execute_script("return document.documentElement.scrollHeight")
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**PHONE, "height": max(height, 844)})
        shot = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
async def registration_site(registration_settings) -> AsyncIterator[Served]:
    app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with served(app) as site:
        yield site


@pytest.fixture(scope="module")
async def proposals_site(proposals_settings) -> AsyncIterator[Served]:
    app = proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with served(app) as site:
        yield site


@pytest.fixture(scope="module", autouse=True)
def axe_summary() -> Any:
    yield
    if RESULTS:
        path = SCREENSHOTS / "axe-results.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **RESULTS}, indent=1, ensure_ascii=False))


async def working_group(site: Served, capacity: int) -> tuple[str, str]:
    wg_id = f"browser-{uuid.uuid4().hex[:8]}"
    title = "Sprachförderung und Bildung"
    async with site.app.state.runtime.transaction() as conn:
        await conn.execute(
            insert(working_groups).values(id=wg_id, title=title, capacity=capacity, position=99)
        )
        await conn.execute(
            insert(meetings).values(
                [
                    {
                        "working_group_id": wg_id,
                        "number": 1,
                        "starts_at": MEETING_1,
                        "ends_at": MEETING_1 + timedelta(hours=2),
                        "venue": "Rathaus, Großer Ratssaal",
                        "address": "Willy-Brandt-Platz 1, 67657 Kaiserslautern",
                    },
                    {
                        "working_group_id": wg_id,
                        "number": 2,
                        "starts_at": MEETING_2,
                        "ends_at": MEETING_2 + timedelta(hours=2),
                        "venue": "Stadtteiltreff Betzenberg",
                        "address": "Kantstraße 3, 67663 Kaiserslautern",
                    },
                ]
            )
        )
    return wg_id, title


async def register(site: Served, wg_id: str, lang: str) -> str:
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        body = registration_body(working_group_id=wg_id, language=lang, name="Ayşe Yılmaz")
        answer = await client.post("/v1/registrations", json=body)
        assert answer.status_code == 202, answer.text
    return await latest_token(site.app.state.runtime, answer.json()["id"])


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_a_registration_from_the_mail_link_to_cancelling(registration_site, browser, lang) -> None:
    site, web = registration_site, Browser(browser)
    wg_id, title = await working_group(site, capacity=20)
    token = await register(site, wg_id, lang)
    when = i18n.format_datetime(MEETING_1, lang)

    await web.open(f"{site.base_url}/v1/registrations/confirm?token={token}")
    await web.check(
        "confirm", lang, [title, when, "Rathaus, Großer Ratssaal", p(lang, "Confirm registration")]
    )
    await web.click("main form button[type=submit]")
    await web.check(
        "status",
        lang,
        [
            p(lang, "Your registration is confirmed. You will receive an e-mail with the dates."),
            p(lang, "Confirmed: you have a seat."),
            title,
            when,
            "Stadtteiltreff Betzenberg",
            p(lang, "Add the meetings to your calendar (.ics)"),
            p(lang, "Cancel registration"),
        ],
    )
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        ics = await client.get(f"/v1/registrations/me/calendar.ics?token={token}")
        assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
        assert ics.text.count("BEGIN:VEVENT") == 2 and "Stadtteiltreff Betzenberg" in ics.text

    other = "en" if lang == "de" else "de"
    await web.click(f'nav a[hreflang="{other}"]')
    await web.check("status-switched", other, [p(other, "Your registration"), title])
    assert f"token={token}" in browser.current_url
    await web.click(f'nav a[hreflang="{lang}"]')

    await web.click("main a.button[href*='/v1/registrations/cancel']")
    await web.check("cancel", lang, [title, p(lang, "Keep my registration")])
    await web.click("main form button[type=submit]")
    text = await web.check("cancelled", lang, [p(lang, "Your registration has been cancelled.")])
    assert title not in text and "Ayşe" not in text  # a revoked link shows nothing personal


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_waiting_list_and_an_unknown_link(registration_site, browser, lang) -> None:
    site, web = registration_site, Browser(browser)
    wg_id, title = await working_group(site, capacity=0)
    token = await register(site, wg_id, lang)
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        confirmed = await client.post("/v1/registrations/confirm", json={"token": token})
        assert confirmed.json()["status"] == "waitlisted"
    await web.open(f"{site.base_url}/v1/registrations/me?token={token}")
    await web.check(
        "status-waitlisted", lang, [title, p(lang, "On the waiting list, position %(position)s.", position=1)]
    )
    await web.open(f"{site.base_url}/v1/registrations/me?token=unknown-link-0000000&lang={lang}")
    await web.check("not-found", lang, [p(lang, "This link is unknown or has expired.")])


async def proposals_working_group(site: Served) -> str:
    wg_id = f"browser-{uuid.uuid4().hex[:8]}"
    async with site.app.state.runtime.transaction() as session:
        await session.execute(insert(proposal_working_groups).values(id=wg_id, title="Sprachförderung"))
    return wg_id


async def submitted(site: Served, client: httpx.AsyncClient, wg_id: str, lang: str, title: str) -> str:
    body = proposal_body(wg_id, language=lang, title=title, author_name="Oleh", author_email="o@example.org")
    answer = await client.post("/v1/proposals", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


async def decide(client: httpx.AsyncClient, settings, proposal_id: str, version: int, body: dict) -> None:
    headers = {**staff_headers(settings, "moderator"), "If-Match": f'"{version}"'}
    answer = await client.post(f"/v1/moderation/proposals/{proposal_id}/decision", json=body, headers=headers)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_proposal_authors_page_and_the_public_page(
    proposals_site, proposals_settings, browser, lang
) -> None:
    site, web = proposals_site, Browser(browser)
    wg_id = await proposals_working_group(site)
    statement = "Bitte nennen Sie einen Ort."
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        asked = await submitted(site, client, wg_id, lang, "Sprachcafé im Stadtteiltreff")
        await decide(
            client,
            proposals_settings,
            asked,
            1,
            {"decision": "request_changes", "public_statement": statement},
        )
        public = await submitted(site, client, wg_id, lang, "Lesepatenschaften an Grundschulen")
        await decide(
            client, proposals_settings, public, 1, {"decision": "publish", "public_statement": "Danke!"}
        )
    token = token_for(proposals_settings.token_secret, uuid.UUID(asked))

    await web.open(f"{site.base_url}/v1/proposals/mine?token={token}")
    await web.check(
        "author-changes-requested",
        lang,
        [
            statement,
            "Sprachcafé im Stadtteiltreff",
            p(lang, "Change your proposal"),
            p(lang, "Withdraw proposal"),
        ],
    )
    # blank (the browser lets five spaces through; the service does not): the form answers with the error
    await web.type_into("#title", "     ")
    await web.click("form[action$='/edit'] button[type=submit]")
    await web.check("author-form-error", lang, [p(lang, "Please correct the marked fields.")])
    await web.type_into("#title", "Sprachcafé im Stadtteiltreff Betzenberg")
    await web.click("form[action$='/edit'] button[type=submit]")
    await web.check(
        "author-edited",
        lang,
        [
            p(lang, "Thank you. Your changed proposal is back with the moderation; you will get an e-mail."),
            "Sprachcafé im Stadtteiltreff Betzenberg",
            p(lang, "Waiting for moderation: a moderator reads it soon."),
        ],
    )
    await web.click("form[action$='/withdraw'] button[type=submit]")
    await web.check(
        "author-withdrawn", lang, [p(lang, "Your proposal has been withdrawn."), p(lang, "Withdrawn.")]
    )

    await web.open(f"{site.base_url}/v1/proposals/{public}")
    await web.check(
        "public-proposal", lang, ["Lesepatenschaften an Grundschulen", p(lang, "Published."), "Danke!"]
    )
    await web.open(f"{site.base_url}/v1/proposals/mine?token=unknown-link-0000000&lang={lang}")
    await web.check("author-not-found", lang, [p(lang, "This link is unknown or has expired.")])


async def erasure_token(site: Served, email: str) -> str:
    async with site.app.state.runtime.transaction() as session:
        rows = (
            await session.execute(
                select(outbox.c.payload).where(outbox.c.event_type == "privacy.erasure_request_submitted")
            )
        ).scalars()
        urls = [p["confirm_url"] for p in rows if p["recipient"]["email"] == email]
    assert len(urls) == 1
    return parse_qs(urlparse(urls[0]).query)["token"][0]


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_an_erasure_request_from_the_mail_link(registration_site, browser, lang) -> None:
    site, web = registration_site, Browser(browser)
    email = unique_email("erase")
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        asked = await client.post("/v1/privacy/erasure-requests", json={"email": email, "language": lang})
        assert asked.status_code == 202
    token = await erasure_token(site, email)

    await web.open(f"{site.base_url}/v1/privacy/erasure-requests/confirm?token={token}")
    await web.check("erasure-confirm", lang, [p(lang, "Delete your data"), p(lang, "Delete my data now")])
    await web.click("main form button[type=submit]")
    started = p(
        lang, "We are deleting your data. When everything is deleted, you will receive one last e-mail."
    )
    await web.check("erasure-started", lang, [started, p(lang, "Follow the deletion")])
    await web.click("main a.button")
    assert "/v1/privacy/erasure-requests/" in browser.current_url
    await web.check("erasure-status", lang, [p(lang, "Delete your data")])
