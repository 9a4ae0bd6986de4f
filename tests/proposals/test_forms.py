"""The proposal form and the published proposals as pages (issue 26), over HTTP without a browser:
the form, a form post answering what pre-moderation means (202) or the form with every error and the
typed values (422), honeypot, the one-time key, the list page with filters, search and "more" links,
the shareable proposal page, and the headers (CSP allowing the one script file, framing)."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from services.proposals.app import create_app
from services.proposals.models import proposals
from shared.pages import PAGE_CSP, SCRIPT_PATH, Frame, Identity, page_csp
from tests.conftest import running, unique_email
from tests.proposals.conftest import staff_headers

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def p(lang: str, message: str, **values: object) -> str:
    return Frame(lang, Identity("", "", "", "", "")).pgettext("page", message, **values)


def key_of(page: str) -> str:
    return re.search(r'name="form_key" value="([A-Za-z0-9_-]+)"', page).group(1)


def filled(wg: str, key: str, **changes: str) -> dict[str, str]:
    return {
        "form_key": key,
        "lang": "de",
        "working_group_id": wg,
        "district_id": "betzenberg",
        "title": "Sprachcafé im Stadtteiltreff",
        "body": "Ein offenes Sprachcafé jeden Mittwoch, für alle, die Deutsch üben möchten.",
        "language": "de",
        "author_name": "Oleh",
        "author_email": unique_email("author"),
        "privacy_consent": "yes",
        "website": "",
        **changes,
    }


async def count(api, title: str) -> int:
    async with api.app.state.runtime.transaction() as conn:
        return await conn.scalar(
            select(func.count()).select_from(proposals).where(proposals.c.title == title)
        )


async def test_the_form_loads_only_its_own_script(proposals_api, make_working_group):
    wg = await make_working_group(proposals_api.app)
    page = await proposals_api.get("/v1/proposals/new", params={"working_group_id": wg, "lang": "ar"})
    assert page.status_code == 200 and '<html lang="ar" dir="rtl">' in page.text
    assert f'<option value="{wg}" selected>' in page.text and 'value="betzenberg"' in page.text
    assert f'<script src="{SCRIPT_PATH}" defer></script>' in page.text and "<script>" not in page.text
    assert page.headers["content-security-policy"] == page_csp(scripts=True)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].count("default-src") == 1
    script = await proposals_api.get(SCRIPT_PATH)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "data-count" in script.text
    # Every other page keeps the policy without scripts.
    listing = await proposals_api.get("/v1/proposals", headers=BROWSER)
    assert listing.headers["content-security-policy"] == PAGE_CSP


async def test_a_form_post_answers_with_pre_moderation_once(proposals_api, make_working_group):
    wg = await make_working_group(proposals_api.app)
    key = key_of((await proposals_api.get("/v1/proposals/new")).text)
    form = filled(wg, key, title="Formular einmal gesendet")
    answer = await proposals_api.post("/v1/proposals", data=form)
    assert answer.status_code == 202 and p("de", "Thank you. Your proposal has arrived.") in answer.text
    assert (
        p(
            "de",
            "We send you an e-mail with a private link. With it you can follow your proposal, change it when asked, or withdraw it.",
        )
        in answer.text
    )
    again = await proposals_api.post("/v1/proposals", data=form)
    assert again.status_code == 202 and await count(proposals_api, "Formular einmal gesendet") == 1
    anonymous = await proposals_api.post(
        "/v1/proposals", data=filled(wg, "", title="Ohne Adresse", author_email="", author_name="")
    )
    assert anonymous.status_code == 202 and "without an e-mail address" in p(
        "en",
        "You sent it without an e-mail address: look for it among the published proposals in a few days.",
    )
    bot = await proposals_api.post("/v1/proposals", data=filled(wg, "", title="Vom Roboter", website="x"))
    assert bot.status_code == 202 and await count(proposals_api, "Vom Roboter") == 0


async def test_every_wrong_field_is_shown_and_the_values_stay(proposals_api, make_working_group):
    wrong = {"form_key": "k" * 20, "lang": "de", "working_group_id": "", "district_id": "nowhere",
             "title": "Kurz", "body": "<b>zu kurz</b>", "language": "xx", "author_name": "N\nN",
             "author_email": "nobody@", "privacy_consent": "no"}  # fmt: skip
    answer = await proposals_api.post("/v1/proposals", data=wrong)
    assert answer.status_code == 422
    summary = answer.text.split('class="error-summary"')[1].split("</div>")[0]
    for field in ("working_group_id", "title", "body", "language", "author_name", "author_email",
                  "privacy_consent"):  # fmt: skip
        assert f'href="#{field}"' in summary, field
    assert "&lt;b&gt;zu kurz&lt;/b&gt;" in answer.text and 'value="nobody@"' in answer.text
    # A district that does not exist: named once the other fields are right.
    wg = await make_working_group(proposals_api.app)
    district = await proposals_api.post("/v1/proposals", data=filled(wg, "", district_id="nowhere"))
    assert district.status_code == 422 and 'href="#district_id"' in district.text
    # JSON bodies unchanged.
    bad_json = await proposals_api.post("/v1/proposals", json={"working_group_id": wg})
    assert bad_json.status_code == 422 and bad_json.headers["content-type"] == "application/problem+json"


async def test_the_published_list_and_page_for_a_browser(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    ids = []
    for i in range(3):
        sent = await proposals_api.post("/v1/proposals", json={
            "working_group_id": wg, "title": f"Öffentlicher Vorschlag {i}", "language": "de",
            "body": "Ein Treffpunkt für Nachbarinnen und Nachbarn im Quartier.", "privacy_consent": True})  # fmt: skip
        ids.append(sent.json()["id"])
        decided = await proposals_api.post(
            f"/v1/moderation/proposals/{ids[-1]}/decision", json={"decision": "publish"},
            headers={**staff_headers(proposals_settings, "moderator"), "If-Match": "1"},
        )  # fmt: skip
        assert decided.status_code == 200
    page = await proposals_api.get(
        "/v1/proposals", params={"working_group_id": wg, "limit": 2}, headers=BROWSER
    )
    assert page.status_code == 200 and "Öffentlicher Vorschlag 2" in page.text
    assert "Öffentlicher Vorschlag 0" not in page.text
    more = re.search(r'href="(/v1/proposals\?[^"]*cursor=[^"]*)"', page.text).group(1).replace("&amp;", "&")
    second = await proposals_api.get(more, headers=BROWSER)
    assert "Öffentlicher Vorschlag 0" in second.text
    found = await proposals_api.get("/v1/proposals", params={"q": "Treffpunkt", "working_group_id": wg},
                                    headers={**BROWSER, "Accept-Language": "ar"})  # fmt: skip
    assert (
        '<html lang="ar" dir="rtl">' in found.text and f'href="/v1/proposals/{ids[0]}?lang=ar"' in found.text
    )
    one = await proposals_api.get(f"/v1/proposals/{ids[0]}", headers=BROWSER)
    assert f"{proposals_settings.public_url}/v1/proposals/{ids[0]}" in one.text
    json_list = await proposals_api.get("/v1/proposals", params={"working_group_id": wg})
    assert len(json_list.json()["items"]) == 3


async def test_frame_ancestors_from_the_settings_reach_the_forms_own_policy(proposals_settings):
    app = create_app(proposals_settings.model_copy(update={"frame_ancestors": "'self'"}))
    async with running(app) as client:
        page = await client.get("/v1/proposals/new")
    assert "frame-ancestors 'self';" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
