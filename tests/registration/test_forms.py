"""The registration form (issue 26) over HTTP, without a browser: the page, a form post answering
"check your mail" (202) or the form again with every error and the typed values (422), the honeypot,
the one-time key that makes a double submit one registration, and the headers (CSP, framing)."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from services.registration.app import create_app
from services.registration.models import registrations
from shared.pages import PAGE_CSP, Frame, Identity
from tests.conftest import running, unique_email
from tests.registration.support import latest_token

BROWSER = {"Accept": "text/html", "Accept-Language": "tr-TR,tr;q=0.9,de;q=0.5"}


def p(lang: str, message: str, **values: object) -> str:
    return Frame(lang, Identity("", "", "", "", "")).pgettext("page", message, **values)


def key_of(page: str) -> str:
    return re.search(r'name="form_key" value="([A-Za-z0-9_-]+)"', page).group(1)


def filled(wg: str, key: str, **changes: str) -> dict[str, str]:
    return {
        "form_key": key,
        "lang": "de",
        "working_group_id": wg,
        "name": "Ayşe Yılmaz",
        "email": unique_email("form"),
        "language": "ar",
        "participant_type": "resident",
        "needs_step_free": "yes",
        "needs_other": "Ein Platz nahe der Tür",
        "interpretation_language": "fa",
        "privacy_consent": "yes",
        "website": "",
        **changes,
    }


async def count(api, email: str) -> int:
    async with api.runtime.transaction() as conn:
        return await conn.scalar(
            select(func.count()).select_from(registrations).where(registrations.c.email == email)
        )


async def test_the_form_shows_the_groups_speaks_the_browsers_language_and_preselects(api, make_working_group):
    wg = await make_working_group(api.runtime, capacity=0)
    page = await api.get("/v1/registrations/new", params={"working_group_id": wg}, headers=BROWSER)
    assert page.status_code == 200 and '<html lang="tr" dir="ltr">' in page.text
    assert f'value="{wg}" checked' in page.text and f"Testkreis {wg}" in page.text
    assert (
        p(
            "tr",
            "All seats are taken. New registrations go on the waiting list (waiting now: %(waiting)s).",
            waiting=0,
        )
        in page.text
    )
    assert page.headers["content-security-policy"] == PAGE_CSP and "<script" not in page.text
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    arabic = await api.get("/v1/registrations/new", params={"lang": "ar"}, headers=BROWSER)
    assert '<html lang="ar" dir="rtl">' in arabic.text and key_of(arabic.text) != key_of(page.text)
    german = await api.get("/v1/registrations/new", headers={"Accept": "text/html"})
    assert '<html lang="de"' in german.text and 'value="de" lang="de" selected' in german.text


async def test_a_form_post_registers_and_answers_check_your_mail(api, make_working_group):
    wg = await make_working_group(api.runtime)
    key = key_of((await api.get("/v1/registrations/new")).text)
    form = filled(wg, key)
    answer = await api.post("/v1/registrations", data=form)
    assert answer.status_code == 202 and answer.headers["content-type"].startswith("text/html")
    assert p("de", "Check your e-mail") in answer.text and form["email"] in answer.text
    async with api.runtime.transaction() as conn:
        row = (await conn.execute(select(registrations).where(registrations.c.email == form["email"]))).one()
    assert row.language == "ar" and row.interpretation_language == "fa" and row.participant_type == "resident"
    assert row.accessibility_needs == "Stufenloser Zugang (Rollstuhl); Ein Platz nahe der Tür"
    assert await latest_token(api.runtime, row.id)
    # Sent twice (a double click, a reload): one registration, the same page.
    again = await api.post("/v1/registrations", data=form)
    assert again.status_code == 202 and await count(api, form["email"]) == 1
    # The same key with other values: the form again, with a new key, nothing stored.
    changed = await api.post("/v1/registrations", data={**form, "email": unique_email()})
    assert changed.status_code == 422 and key_of(changed.text) != key
    assert (
        p("de", "This form was already sent with other values. Please check them and send again.")
        in changed.text
    )


async def test_every_wrong_field_is_named_at_the_top_and_at_the_field_and_the_values_stay(
    api, make_working_group
):
    key = key_of((await api.get("/v1/registrations/new")).text)
    wrong = {
        "form_key": key,
        "lang": "ar",
        "working_group_id": "no-such-group",
        "name": "",
        "email": "not-an-address<script>",
        "language": "xx",
        "participant_type": "alien",
        "organization": "O" * 201,
        "district": "Innen\u0000stadt",
        "needs_other": "x" * 2100,
        "interpretation_language": "klingon",
    }
    answer = await api.post("/v1/registrations", data=wrong)
    assert answer.status_code == 422 and '<html lang="ar" dir="rtl">' in answer.text
    summary = answer.text.split('class="error-summary"')[1].split("</div>")[0]
    for field in ("name", "email", "language", "participant_type", "organization", "district",
                  "accessibility_needs", "interpretation_language", "privacy_consent"):  # fmt: skip
        assert f'href="#{field}"' in summary, field
        assert f'id="{field}-error"' in answer.text, field
    assert (
        "<title>" + p("ar", "Error: %(title)s", title=p("ar", "Register for a working group")) in answer.text
    )
    assert 'value="not-an-address&lt;script&gt;"' in answer.text and "O" * 201 in answer.text
    assert key_of(answer.text) == key  # nothing was stored: the same key sends the corrected form
    # The working group: known to the form only once the fields are right.
    unknown = await api.post("/v1/registrations", data=filled("no-such-group", key))
    assert unknown.status_code == 422 and 'href="#working_group_id"' in unknown.text


async def test_the_honeypot_answers_alike_and_stores_nothing(api, make_working_group):
    wg = await make_working_group(api.runtime)
    form = filled(wg, "", website="http://spam.example")
    answer = await api.post("/v1/registrations", data=form)
    assert answer.status_code == 202 and await count(api, form["email"]) == 0


async def test_json_bodies_are_unchanged(api, make_working_group):
    wg = await make_working_group(api.runtime)
    body = {"working_group_id": wg, "name": "A", "email": unique_email(), "language": "de",
            "participant_type": "resident", "privacy_consent": True}  # fmt: skip
    answer = await api.post("/v1/registrations", json=body)
    assert answer.status_code == 202 and answer.json()["status"] == "pending_confirmation"
    bad = await api.post("/v1/registrations", json={**body, "privacy_consent": "yes"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "privacy_consent"
    other = await api.post("/v1/registrations", content=b"x", headers={"Content-Type": "text/plain"})
    assert other.status_code == 415


async def test_the_form_keeps_the_rate_limit(registration_settings, make_working_group):
    app = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 2}))
    async with running(app) as client:
        wg = await make_working_group(app.state.runtime)
        statuses = [
            (await client.post("/v1/registrations", data=filled(wg, ""))).status_code for _ in range(4)
        ]
        assert statuses[:2] == [202, 202] and statuses[-1] == 429


async def test_frame_ancestors_come_from_the_settings(registration_settings):
    embed = registration_settings.model_copy(
        update={"frame_ancestors": "https://www.kaiserslautern.de 'self'"}
    )
    async with running(create_app(embed)) as client:
        page = await client.get("/v1/registrations/new")
    assert "frame-ancestors https://www.kaiserslautern.de 'self';" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers


async def test_the_page_cache_renders_once_for_concurrent_requests_and_again_after_its_second():
    import asyncio

    from shared.pages import PageCache

    cache, calls = PageCache(ttl=0.2), []

    async def render() -> str:
        calls.append(1)
        await asyncio.sleep(0.05)
        return f"page {len(calls)}"

    first = await asyncio.gather(*(cache.page(("k",), render) for _ in range(20)))
    assert first == ["page 1"] * 20 and len(calls) == 1
    await asyncio.sleep(0.25)
    assert await cache.page(("k",), render) == "page 2"

    async def broken() -> str:
        raise RuntimeError("database gone")

    results = await asyncio.gather(*(cache.page(("b",), broken) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
