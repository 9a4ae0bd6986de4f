"""The resident forms (issue 26) in headless Chromium, at phone width (390 px) and on a desktop, in
German and Arabic: register through the form, confirm from the mail's link, see the status; send a
proposal and follow it by its link; a form with every field wrong shows every error and keeps the
values; keyboard only; a double submit creates one registration and one proposal; axe-core finds no
serious or critical violation on any page, and no Content-Security-Policy complaint is logged.

Screenshots land in ``var/screenshots/forms-*.png`` (the ones in ``docs/`` are copies), axe results
in ``var/screenshots/axe-forms.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import func, insert, select

from services.proposals.app import create_app as proposals_app
from services.proposals.models import proposals
from services.proposals.models import working_groups as proposal_working_groups
from services.registration.app import create_app as registration_app
from services.registration.config import RegistrationSettings
from services.registration.models import meetings, outbox, registrations, working_groups
from shared.pages import Frame, Identity
from tests.browser.conftest import PHONE, SCREENSHOTS, Served, served
from tests.conftest import unique_email
from tests.proposals.conftest import staff_headers

pytestmark = pytest.mark.browser
IDENTITY = Identity.of(RegistrationSettings())
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}
RESULTS: dict[str, dict[str, Any]] = {}
MEETING = datetime.now(UTC).replace(hour=16, minute=0, second=0, microsecond=0) + timedelta(days=30)


def p(lang: str, message: str, **values: Any) -> str:
    return Frame(lang, IDENTITY).pgettext("page", message, **values)


class Web:
    """Blocking Selenium calls in a thread (the served apps keep answering), at one viewport."""

    def __init__(self, driver: Any, viewport: str) -> None:
        self.driver, self.viewport = driver, viewport
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", VIEWPORTS[viewport])

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    def _wait_new_page(self, act: Any) -> None:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.wait import WebDriverWait

        d = self.driver
        d.execute_script("window.mitwirkungOldPage = true")
        act()
        WebDriverWait(d, 30, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return window.mitwirkungOldPage === undefined && document.readyState === 'complete'"
            )
        )

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await self.run(self._wait_new_page, lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def double_click(self, css: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        def act() -> None:
            button = self.driver.find_element(By.CSS_SELECTOR, css)
            ActionChains(self.driver).double_click(button).perform()

        await self.run(self._wait_new_page, act)

    async def fill(self, values: dict[str, str]) -> None:
        """Type into text fields, choose options, tick boxes and radios (by their CSS selector)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.select import Select

        def fill() -> None:
            for css, value in values.items():
                element = self.driver.find_element(By.CSS_SELECTOR, css)
                if element.tag_name == "select":
                    Select(element).select_by_value(value)
                elif element.get_attribute("type") in ("radio", "checkbox"):
                    if not element.is_selected():
                        self.driver.execute_script("arguments[0].scrollIntoView({block:'center'})", element)
                        element.click()
                else:
                    element.clear()
                    element.send_keys(value)

        await self.run(fill)

    async def keyboard(self, steps: list[tuple[str, str]]) -> None:
        """Keyboard only: Tab until ``css`` has the focus (with a visible focus ring), then type ``keys``
        (text, or " " for a checkbox or radio, or "ENTER")."""
        await self.run(self._keyboard, steps)

    def _keyboard(self, steps: list[tuple[str, str]]) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        d = self.driver
        d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
        for css, keys in steps:
            for _ in range(120):
                if d.execute_script("return document.activeElement.matches(arguments[0])", css):
                    break
                ActionChains(d).send_keys(Keys.TAB).perform()
            else:
                raise AssertionError(f"Tab never reached {css}")
            ring = d.execute_script(
                "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.boxShadow]"
            )
            assert ring[0] == "solid" or ring[1] != "none", (css, ring)
            if keys == "ENTER":
                self._wait_new_page(lambda: ActionChains(d).send_keys(Keys.ENTER).perform())
            else:
                ActionChains(d).send_keys(keys).perform()

    async def check(self, page: str, lang: str, facts: list[str], *, scripts: int = 0) -> str:
        return await self.run(self._check, page, lang, facts, scripts)

    def _check(self, page: str, lang: str, facts: list[str], scripts: int) -> str:
        from axe_selenium_python import Axe
        from selenium.webdriver.common.by import By

        d = self.driver
        html = d.find_element(By.TAG_NAME, "html")
        assert html.get_attribute("lang") == lang and html.get_attribute("dir") == (
            "rtl" if lang == "ar" else "ltr"
        )
        visible = d.find_element(By.TAG_NAME, "body").text
        for fact in [*facts, IDENTITY.office_name, p(lang, "Privacy notice")]:
            assert fact in visible, f"{page}/{lang}: {fact!r} not visible in:\n{visible}"
        width = VIEWPORTS[self.viewport]["width"]
        assert d.execute_script("return document.documentElement.scrollWidth") <= width, page
        assert d.execute_script("return document.scripts.length") == scripts, page
        axe = Axe(d)
        axe.inject()
        results = axe.run()
        serious = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{page}/{lang}/{self.viewport}: " + axe.report(serious)
        complaints = [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]]
        assert complaints == [], complaints
        RESULTS[f"{page}/{lang}/{self.viewport}"] = {
            "url": urlparse(d.current_url).path,
            "violations": {v["id"]: v["impact"] for v in results["violations"]},
            "passes": len(results["passes"]),
        }
        height = d.execute_script("return document.documentElement.scrollHeight")
        metrics = VIEWPORTS[self.viewport]
        d.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {**metrics, "height": max(height, metrics["height"])}
        )
        shot = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        (SCREENSHOTS / f"forms-{page}-{lang}-{self.viewport}.png").write_bytes(base64.b64decode(shot["data"]))
        return visible


@pytest.fixture(scope="module", autouse=True)
def axe_summary() -> Any:
    yield
    if RESULTS:
        (SCREENSHOTS / "axe-forms.json").write_text(json.dumps(RESULTS, indent=1, ensure_ascii=False))


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


async def working_group(site: Served, capacity: int = 20) -> tuple[str, str]:
    wg_id = f"form-{uuid.uuid4().hex[:8]}"
    title = f"Arbeit und Ausbildung {wg_id[-4:]}"
    async with site.app.state.runtime.transaction() as conn:
        await conn.execute(
            insert(working_groups).values(id=wg_id, title=title, capacity=capacity, position=0)
        )
        await conn.execute(
            insert(meetings).values(
                [
                    {"working_group_id": wg_id, "number": 1, "starts_at": MEETING,
                     "ends_at": MEETING + timedelta(hours=2), "venue": "Rathaus", "address": "Willy-Brandt-Platz 1"},
                    {"working_group_id": wg_id, "number": 2, "starts_at": None, "ends_at": None, "venue": "", "address": ""},
                ]
            )
        )  # fmt: skip
    return wg_id, title


async def registrations_of(site: Served, email: str) -> list[Any]:
    async with site.app.state.runtime.transaction() as conn:
        return list((await conn.execute(select(registrations).where(registrations.c.email == email))).all())


async def mailed_confirm_link(site: Served, registration_id: uuid.UUID) -> str:
    """The confirm link as the mail carries it (the event the notification service mails), pointed at
    the served site instead of the public URL."""
    async with site.app.state.runtime.transaction() as conn:
        payload = await conn.scalar(
            select(outbox.c.payload)
            .where(outbox.c.event_type == "registration.submitted")
            .where(outbox.c.payload["registration_id"].astext == str(registration_id))
        )
    url = urlparse(payload["links"]["confirm_url"])
    return f"{site.base_url}{url.path}?{url.query}"


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
@pytest.mark.parametrize("lang", ["de", "ar"])
async def test_register_through_the_form_confirm_from_the_mail_and_see_the_status(
    registration_site, browser, lang, viewport
) -> None:
    site, web = registration_site, Web(browser, viewport)
    wg_id, title = await working_group(site)
    email = unique_email("form")
    await web.open(f"{site.base_url}/v1/registrations/new?working_group_id={wg_id}&lang={lang}")
    await web.check("registration-form", lang, [p(lang, "Register for a working group"), title,
                                                  p(lang, "Seats left: %(seats)s of %(capacity)s.", seats=20, capacity=20)])  # fmt: skip
    await web.fill({"#name": "Ayşe Yılmaz", "#email": email, "#participant_type-resident": "", "#needs_step_free": "",
                    "#interpretation_language": "fa", "#privacy_consent": ""})  # fmt: skip
    await web.double_click("form button[type=submit]")  # a double click: one registration
    await web.check("registration-sent", lang, [p(lang, "Check your e-mail"), email])
    rows = await registrations_of(site, email)
    assert len(rows) == 1 and rows[0].language == lang and rows[0].interpretation_language == "fa"

    await web.open(await mailed_confirm_link(site, rows[0].id))
    await web.click("main form button[type=submit]")
    await web.check("registration-confirmed", lang, [p(lang, "Confirmed: you have a seat."), title])


@pytest.mark.parametrize("lang", ["de", "ar"])
async def test_a_form_with_every_field_wrong_shows_every_error_and_keeps_the_values(
    registration_site, browser, lang
) -> None:
    site, web = registration_site, Web(browser, "phone")
    await web.open(f"{site.base_url}/v1/registrations/new?lang={lang}")
    await web.fill({"#email": "kein-at-zeichen", "#organization": "Verein", "#needs_other": "Ein Platz nahe der Tür",
                    "#needs_step_free": ""})  # fmt: skip
    await web.click("form button[type=submit]")  # novalidate: the service checks, the page shows
    fields = (
        "working_group_id",
        "name",
        "email",
        "participant_type",
        "privacy_consent",
    )
    text = await web.check("registration-errors", lang, [p(lang, "There is a problem")] +
                           [p(lang, m) for m in ("Choose a working group.", "Enter your name (one line, at most 200 characters).",
                                                 "Enter an e-mail address like name@example.org.", "Choose how you take part.",
                                                 "Agree to the privacy notice to register.")])  # fmt: skip
    assert text.count(p(lang, "Choose a working group.")) == 2  # in the summary and at the field
    d = browser
    assert d.execute_script("return document.activeElement.className") == "error-summary"
    for field in fields:
        assert d.find_element("css selector", f'.error-summary a[href="#{field}"]')
    assert d.find_element("id", "email").get_attribute("value") == "kein-at-zeichen"
    assert d.find_element("id", "organization").get_attribute("value") == "Verein"
    assert d.find_element("id", "needs_step_free").is_selected()
    assert d.find_element("id", "needs_other").get_attribute("value") == "Ein Platz nahe der Tür"
    assert d.find_element("id", "email").get_attribute("aria-invalid") == "true"
    assert d.title.startswith(p(lang, "Error: %(title)s", title=""))


async def test_keyboard_only_registration(registration_site, browser) -> None:
    site, web = registration_site, Web(browser, "desktop")
    wg_id, title = await working_group(site)
    email = unique_email("keys")
    await web.open(f"{site.base_url}/v1/registrations/new?working_group_id={wg_id}&lang=de")
    await web.keyboard([
        ("#name", "Oleh Kovalenko"), ("#email", email), ("#participant_type-resident", " "),
        ("#needs_hearing_loop", " "), ("#privacy_consent", " "), ("form button[type=submit]", "ENTER"),
    ])  # fmt: skip
    await web.check("registration-sent-keyboard", "de", [p("de", "Check your e-mail")])
    rows = await registrations_of(site, email)
    assert len(rows) == 1 and rows[0].accessibility_needs == "Höranlage (Induktionsschleife)"


async def proposals_working_group(site: Served) -> str:
    wg_id = f"form-{uuid.uuid4().hex[:8]}"
    async with site.app.state.runtime.transaction() as session:
        await session.execute(
            insert(proposal_working_groups).values(id=wg_id, title=f"Sprachförderung {wg_id[-4:]}")
        )
    return wg_id


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
@pytest.mark.parametrize("lang", ["de", "ar"])
async def test_send_a_proposal_and_follow_it_by_its_link(
    proposals_site, proposals_settings, browser, lang, viewport
) -> None:
    site, web = proposals_site, Web(browser, viewport)
    wg_id = await proposals_working_group(site)
    title = f"Sprachcafé {uuid.uuid4().hex[:6]}"
    await web.open(f"{site.base_url}/v1/proposals/new?working_group_id={wg_id}&lang={lang}")
    await web.check("proposal-form", lang, [p(lang, "Send a proposal")], scripts=1)
    await web.fill({"#district_id": "betzenberg", "#title": title,
                    "#body": "Ein offenes Sprachcafé jeden Mittwoch im Stadtteiltreff, für alle.",
                    "#author_email": unique_email("author"), "#privacy_consent": ""})  # fmt: skip
    # The live count (the script's enhancement) follows the typing.
    await asyncio.sleep(1)  # the count waits for a pause in typing
    count = await web.run(lambda: browser.find_element("id", "body-count").text)
    assert count == p(lang, "%(count)s of %(max)s characters", count=66, max=5000)
    await web.double_click("form button[type=submit]")
    await web.check("proposal-sent", lang, [p(lang, "Thank you. Your proposal has arrived.")])
    async with site.app.state.runtime.transaction() as conn:
        ids = list((await conn.execute(select(proposals.c.id).where(proposals.c.title == title))).scalars())
    assert len(ids) == 1  # a double click: one proposal
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        decided = await client.post(
            f"/v1/moderation/proposals/{ids[0]}/decision", json={"decision": "publish"},
            headers={**staff_headers(proposals_settings, "moderator"), "If-Match": "1"},
        )  # fmt: skip
        assert decided.status_code == 200
    await web.open(f"{site.base_url}/v1/proposals?working_group_id={wg_id}&lang={lang}")
    await web.check("published-list", lang, [p(lang, "Proposals of the residents"), title])
    await web.click(f'a[href^="/v1/proposals/{ids[0]}"]')
    await web.check("published-proposal", lang, [title, p(lang, "Published."), p(lang, "Share this proposal"),
                                                   f"/v1/proposals/{ids[0]}"])  # fmt: skip


async def test_the_proposal_form_with_errors(proposals_site, browser) -> None:
    site, web = proposals_site, Web(browser, "phone")
    await web.open(f"{site.base_url}/v1/proposals/new?lang=ar")
    await web.fill({"#title": "Kurz", "#body": "<b>zu kurz</b>", "#author_email": "x@"})
    await web.click("form button[type=submit]")
    await web.check(
        "proposal-errors",
        "ar",
        [p("ar", "There is a problem"), p("ar", "Choose a working group.")],
        scripts=1,
    )
    assert browser.find_element("id", "body").get_attribute("value") == "<b>zu kurz</b>"
    async with site.app.state.runtime.transaction() as conn:
        assert (
            await conn.scalar(select(func.count()).select_from(proposals).where(proposals.c.title == "Kurz"))
            == 0
        )
