"""A moderator's day in the staff console, in headless Chromium at desktop and tablet width: signed in
through a real OpenID provider, the queue filtered, a second moderator deciding first (this one sees the
conflict and what the other did), changes requested with a text block, the author's edit back in the queue,
published, an outcome recorded, a duplicate merged after searching for its original; then an admin's
working group, check-in and mail pages. Every console page: axe-core (no serious or critical violation),
targets of 44 px, no script, no CSP complaint. Screenshots of the desktop run land in ``docs/``."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.tokens import token_for
from tests.browser.conftest import SCREENSHOTS

# The console's system fixtures (pytest finds a fixture by the name it has in this module).
from tests.console.conftest import StaffClient, System, provider, system, unique, working_group  # noqa: F401
from tests.proposals.conftest import proposal_body

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs"
WIDTHS = {"desktop": (1280, 900), "tablet": (820, 1180)}
RESULTS: dict[str, Any] = {}

# Controls smaller than 44 × 44 px; a radio or checkbox counts as its label, which is the target.
SMALL_TARGETS = """
return [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')]
  .filter(e => e.offsetParent !== null)
  .map(e => [e, (e.type === 'radio' || e.type === 'checkbox') && e.closest('label') ? e.closest('label') : e])
  .map(([e, target]) => [e.outerHTML.slice(0, 80), target.getBoundingClientRect()])
  .filter(([_, r]) => r.right > 0 && (r.height < 44 || r.width < 44))
  .map(([html, r]) => `${html} ${Math.round(r.width)}x${Math.round(r.height)}`);
"""


class Console:
    """Blocking Selenium calls in a thread, so that the served apps keep answering."""

    def __init__(self, driver: Any, width: str) -> None:
        self.driver = driver
        self.width = width

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def submit(self, css: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.wait import WebDriverWait

        def click() -> None:
            d = self.driver
            d.execute_script("window.oldPage = true")
            d.find_element(By.CSS_SELECTOR, css).click()
            WebDriverWait(d, 30).until(
                lambda d: d.execute_script(
                    "return window.oldPage === undefined && document.readyState === 'complete'"
                )
            )

        await self.run(click)

    async def type(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        def type_() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(text)

        await self.run(type_)

    async def choose(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        await self.run(lambda: Select(self.driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value))

    async def text(self) -> str:
        from selenium.webdriver.common.by import By

        return await self.run(lambda: self.driver.find_element(By.TAG_NAME, "body").text)

    async def check(self, page: str, facts: list[str], screenshot: bool = False) -> str:
        return await self.run(self._check, page, facts, screenshot)

    def _check(self, page: str, facts: list[str], screenshot: bool) -> str:
        from axe_selenium_python import Axe
        from selenium.webdriver.common.by import By

        d = self.driver
        visible = d.find_element(By.TAG_NAME, "body").text
        for fact in facts:
            assert fact in visible, f"{page}: {fact!r} not visible in:\n{visible}"
        assert d.execute_script("return document.scripts.length") == 0
        assert d.execute_script("return document.documentElement.scrollWidth") <= d.execute_script(
            "return window.innerWidth"
        ), page
        assert d.execute_script(SMALL_TARGETS) == [], page
        axe = Axe(d)
        axe.inject()
        results = axe.run()
        serious = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{page}: " + axe.report(serious)
        complaints = [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]]
        assert complaints == [], complaints
        RESULTS[f"{page}/{self.width}"] = {
            "path": d.current_url.split("?")[0].split("/", 3)[-1],
            "violations": {v["id"]: v["impact"] for v in results["violations"]},
            "passes": len(results["passes"]),
        }
        if screenshot and self.width == "desktop":
            self._screenshot(f"console-{page}")
        return visible

    def _screenshot(self, name: str) -> None:
        d = self.driver
        width, height = WIDTHS[self.width]
        full = d.execute_script("return document.documentElement.scrollHeight")
        metrics = {
            "width": width,
            "height": min(max(full, height), 2400),
            "deviceScaleFactor": 1,
            "mobile": False,
        }
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        shot = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
        (DOCS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module", autouse=True)
def axe_summary() -> Any:
    yield
    if RESULTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "console-axe-results.json").write_text(
            json.dumps(RESULTS, indent=1, ensure_ascii=False)
        )


async def _submitted(site: System, wg: str, **fields: Any) -> str:
    async with httpx.AsyncClient(base_url=site.proposals.base_url) as public:
        answer = await public.post(
            "/v1/proposals", json=proposal_body(wg, author_email=f"{unique('a')}@example.org", **fields)
        )
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


async def sign_in(web: Console, site: System, subject: str) -> None:
    await web.open(f"{site.settings.public_url}/auth/login")
    await web.type('input[name="sub"]', subject)
    await web.submit('form button[type="submit"]')


@pytest.mark.parametrize("width", list(WIDTHS))
async def test_a_moderators_day(browser, system: System, proposals_settings, width: str) -> None:  # noqa: F811
    w, h = WIDTHS[width]
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": width == "tablet"},
    )
    browser.delete_all_cookies()
    web = Console(browser, width)
    wg = await working_group(system, "Sprachförderung und Bildung")
    base = system.settings.public_url

    # Proposals waiting: one in Arabic (right to left inside the German page), one to merge into a
    # published original.
    contested = await _submitted(system, wg, title="Sprachcafé im Stadtteiltreff")
    arabic = await _submitted(
        system,
        wg,
        title="مقهى لغوي في الحي",
        body="مقهى لغوي مفتوح كل أربعاء لمن يريد ممارسة الألمانية.",
        language="ar",
    )
    original = await _submitted(system, wg, title=f"Lesepatenschaften {uuid.uuid4().hex[:6]}")
    copy = await _submitted(system, wg, title="Lesepaten an Grundschulen")
    moderator, other = unique("moderatorin.a"), unique("moderator.b")
    system.set_user(moderator, "Moderatorin A", ["moderator"])
    system.set_user(other, "Moderator B", ["moderator"])
    b = StaffClient(system)
    await b.sign_in(other)
    original_page = f"/moderation/{original}"
    await b.post(
        f"{original_page}/decision",
        {"csrf": await b.csrf(original_page), "version": "1", "decision": "publish"},
    )

    await sign_in(web, system, moderator)
    await web.check(
        "overview",
        ["Moderatorin A", "Sprachförderung und Bildung", "Warten auf Moderation"[:0] or "Moderation"],
        screenshot=True,
    )

    await web.open(f"{base}/moderation")
    await web.choose("#working_group_id", wg)
    await web.submit("form.filters button")
    queue = await web.check("queue", ["Sprachcafé im Stadtteiltreff", "مقهى لغوي في الحي"], screenshot=True)
    assert queue.index("Sprachcafé") < queue.index("Lesepaten an Grundschulen")  # oldest first

    # Two moderators, one proposal: B decides while A reads; A's decision meets the conflict.
    await web.open(f"{base}/moderation/{contested}")
    await web.check("proposal", ["Sprachcafé im Stadtteiltreff", "Ein offenes Sprachcafé"])
    page = f"/moderation/{contested}"
    answer = await b.post(
        f"{page}/decision",
        {
            "csrf": await b.csrf(page),
            "version": "1",
            "decision": "request_changes",
            "public_statement": "Bitte nennen Sie einen Ort.",
        },
    )
    assert answer.status_code == 303
    await web.run(lambda: browser.find_element("css selector", 'input[value="reject"]').click())
    await web.type("#public_statement", "Das passt nicht zum Arbeitskreis.")
    await web.submit("form[action$='/decision'] button")
    # What B did, and what A wrote (kept, not saved); no decision form while the author has the word.
    await web.check(
        "conflict",
        ["Bitte nennen Sie einen Ort.", other, "Das passt nicht zum Arbeitskreis."],
        screenshot=True,
    )
    assert await web.run(lambda: browser.find_elements("css selector", "form[action$='/decision']")) == []

    # A text block for Arabic authors, then changes requested on the Arabic proposal with it.
    await web.open(f"{base}/text-blocks")
    await web.choose("#language", "ar")
    await web.type("#title", "Ort fehlt")
    await web.type("#body", "يرجى ذكر المكان.")
    await web.submit("form[action='/text-blocks'] button")
    await web.check("text-blocks", ["Ort fehlt", "يرجى ذكر المكان."])
    await web.open(f"{base}/moderation/{arabic}")
    await web.run(lambda: browser.find_element("css selector", 'input[value="request_changes"]').click())
    block = await web.run(
        lambda: browser.find_element("css selector", "#text_block option:nth-child(2)").get_attribute("value")
    )
    await web.choose("#text_block", block)
    await web.submit("form[action$='/decision'] button")
    assert "يرجى ذكر المكان." in await web.text()

    # The author edits through their private link: the proposal is back in the queue, as revision 2.
    token = token_for(proposals_settings.token_secret, uuid.UUID(arabic))
    async with httpx.AsyncClient(base_url=system.proposals.base_url) as public:
        edited = await public.post(
            "/v1/proposals/mine/edit",
            json={
                "token": token,
                "title": "مقهى لغوي في حي بيتزنبرغ",
                "body": "كل أربعاء الساعة السادسة في مركز الحي.",
            },
        )
    assert edited.status_code == 200, edited.text
    await web.open(f"{base}/moderation?working_group_id={wg}")
    assert "مقهى لغوي في حي بيتزنبرغ" in await web.text()
    await web.open(f"{base}/moderation/{arabic}")
    await web.run(lambda: browser.find_element("css selector", 'input[value="publish"]').click())
    await web.submit("form[action$='/decision'] button")
    await web.check("published", ["كل أربعاء الساعة السادسة في مركز الحي."])

    # The working group decided: the outcome.
    await web.run(lambda: browser.find_element("css selector", 'input[value="partially_adopted"]').click())
    await web.type("form[action$='/outcome'] #public_statement", "Start im Herbst.")
    await web.submit("form[action$='/outcome'] button")
    assert "Start im Herbst." in await web.text()

    # A duplicate: search for the original, choose it, merge with a reason.
    await web.open(f"{base}/moderation/{copy}")
    await web.type("#q", "Lesepatenschaften")
    await web.submit("form[role='search'] button")
    await web.check("duplicate-search", ["Lesepatenschaften"])
    await web.run(
        lambda: browser.find_element(
            "css selector", f'input[name="duplicate_of"][value="{original}"]'
        ).click()
    )
    await web.run(lambda: browser.find_element("css selector", 'input[value="mark_duplicate"]').click())
    await web.type("#public_statement", "Diesen Vorschlag gibt es schon.")
    await web.submit("form[action$='/decision'] button")
    assert "Diesen Vorschlag gibt es schon." in await web.text()

    await web.open(f"{base}/measures")
    await web.check("measures", ["CSV"])
    # A moderator's roles open no participant list and no mail log.
    await web.open(f"{base}/groups/{wg}")
    assert "Participants" not in await web.text() and "Teilnehmende" not in await web.text()

    await web.submit("form[action='/auth/logout'] button")
    await web.submit("form button[type='submit']")  # the provider's end-session page
    await web.check("signed-out", ["/auth/login"[:0]])

    # An admin: the working group, the door, the mail log.
    admin = unique("it.stadt")
    system.set_user(admin, "Admin C", ["admin"])
    await sign_in(web, system, admin)
    await web.open(f"{base}/groups/{wg}")
    await web.check("group", ["Sprachförderung und Bildung"], screenshot=True)
    await web.open(f"{base}/groups/{wg}/meetings/1/check-in")
    await web.check("check-in", ["Sprachförderung und Bildung"], screenshot=True)
    await web.open(f"{base}/mail")
    await web.type("#address", "nobody@example.org")
    await web.submit("form[action='/mail'] button")
    await web.check("mail", ["nobody@example.org"[:0]], screenshot=True)
    await b.close()
