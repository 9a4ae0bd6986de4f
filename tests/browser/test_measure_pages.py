"""The measures' pages in a real browser (Chromium, phone-sized, axe): a measure with the council's
decision and its timeline, following it through the page's form, the opt-in link's button, and the
unsubscribe link's button — in every language, right to left for Arabic."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import insert, select

from services.proposals.app import create_app as proposals_app
from services.proposals.models import measure_followers
from services.proposals.models import working_groups as proposal_working_groups
from shared.languages import LANGUAGES
from shared.tokens import token_for
from tests.browser.conftest import Served, served
from tests.browser.test_resident_pages import Browser, p
from tests.conftest import unique_email
from tests.proposals.conftest import staff_headers
from tests.proposals.test_measures import measure_body, published_with_outcome

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def measures_site(proposals_settings) -> AsyncIterator[Served]:
    app = proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with served(app) as site:
        yield site


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_a_measure_its_follow_form_and_the_followers_links(
    measures_site, proposals_settings, browser, lang
) -> None:
    site, web = measures_site, Browser(browser)
    wg = f"browser-{uuid.uuid4().hex[:8]}"
    async with site.app.state.runtime.transaction() as session:
        await session.execute(insert(proposal_working_groups).values(id=wg, title="Sprachförderung"))
    moderator = staff_headers(proposals_settings, "moderator")
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        pid = await published_with_outcome(client, proposals_settings, wg, "adopted")
        created = await client.post("/v1/measures", json=measure_body(wg, [pid]), headers=moderator)
        measure_id = created.json()["id"]
        await client.post(
            f"/v1/measures/{measure_id}/council-decision",
            json={"decided_on": "2027-03-15", "reference": "0123/2027", "decision": "amended",
                  "public_statement": "Zwei statt drei Standorte."},
            headers=moderator,
        )  # fmt: skip
        await client.post(
            f"/v1/measures/{measure_id}/progress",
            json={
                "status": "in_progress",
                "on": "2027-06-01",
                "public_statement": "Der erste Standort ist offen.",
            },
            headers=moderator,
        )

    await web.open(f"{site.base_url}/v1/measures/{measure_id}?lang={lang}")
    await web.check(
        "measure",
        lang,
        [
            "Sprachcafés in den Stadtteilen",
            p(lang, "Adopted by the city council with changes."),
            "Zwei statt drei Standorte.",
            p(lang, "In progress."),
            "Der erste Standort ist offen.",
            p(lang, "Follow this measure"),
        ],
    )
    email = unique_email("browser")
    await web.type_into("#email", email)
    await web.click("form[action$='/followers'] button[type=submit]")
    await web.check(
        "measure-follow-asked",
        lang,
        [p(lang, "Thank you. Please confirm with the link in the e-mail we are sending you.")],
    )

    async with site.app.state.runtime.transaction() as session:
        follower_id = await session.scalar(
            select(measure_followers.c.id).where(measure_followers.c.email == email)
        )
    token = token_for(proposals_settings.token_secret, follower_id)
    await web.open(f"{site.base_url}/v1/measures/followers/confirm?token={token}")
    await web.check("measure-confirm", lang, [p(lang, "Yes, send me e-mails")])
    await web.click("form button[type=submit]")
    await web.check(
        "measure-confirmed",
        lang,
        [p(lang, "You follow “%(title)s” now.", title="Sprachcafés in den Stadtteilen")],
    )

    await web.open(f"{site.base_url}/v1/measures/{measure_id}/unsubscribe?token={token}&lang={lang}")
    await web.check(
        "measure-unsubscribe", lang, [p(lang, "Do you want to stop the e-mails about this measure?")]
    )
    await web.click("form button[type=submit]")
    await web.check(
        "measure-unsubscribed", lang, [p(lang, "You will get no more e-mails about this measure.")]
    )
