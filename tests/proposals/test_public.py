"""Public reading: published proposals only, filters, full-text search (German stemming for German
texts, plain words for the others), keyset pages; residents' markup is stored and returned as text."""

from __future__ import annotations

from tests.proposals.conftest import proposal_body, staff_headers


async def publish(api, settings, wg: str, **overrides) -> str:
    answer = await api.post("/v1/proposals", json=proposal_body(wg, **overrides))
    proposal_id = answer.json()["id"]
    decided = await api.post(
        f"/v1/moderation/proposals/{proposal_id}/decision",
        json={"decision": "publish"},
        headers={**staff_headers(settings, "moderator"), "If-Match": "1"},
    )
    assert decided.status_code == 200, decided.text
    return proposal_id


async def test_only_published_proposals_newest_first_in_keyset_pages(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    published = [
        await publish(proposals_api, proposals_settings, wg, title=f"Öffentlich Nummer {i}") for i in range(5)
    ]
    await proposals_api.post("/v1/proposals", json=proposal_body(wg, title="Noch nicht geprüft"))

    seen, cursor = [], None
    while True:
        params = {"working_group_id": wg, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await proposals_api.get("/v1/proposals", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        assert all(p["status"] == "published" for p in page["items"])
        assert all("author_name" not in p and "internal_note" not in p for p in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(published))

    by_district = (
        await proposals_api.get("/v1/proposals", params={"working_group_id": wg, "district_id": "betzenberg"})
    ).json()
    assert by_district["items"] == []


async def test_search_uses_german_stemming_for_german_and_plain_words_otherwise(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    german = await publish(
        proposals_api,
        proposals_settings,
        wg,
        title="Mehr Sprachkurse für Familien",
        body="Wir wünschen uns abendliche Sprachkurse, damit berufstätige Eltern teilnehmen können.",
    )
    turkish = await publish(
        proposals_api,
        proposals_settings,
        wg,
        language="tr",
        title="Mahalle kafesi için öneri",
        body="Her çarşamba akşamı mahallede bir buluşma kafesi açılmalı, herkes gelebilir.",
    )
    # "Familie" finds "Familien", "Sprachkurs" finds "Sprachkurse": German stems.
    for q in ("Familie", "Sprachkurs", "eltern"):
        found = (await proposals_api.get("/v1/proposals", params={"working_group_id": wg, "q": q})).json()
        assert [p["id"] for p in found["items"]] == [german], q
    found = (await proposals_api.get("/v1/proposals", params={"working_group_id": wg, "q": "kafesi"})).json()
    assert [p["id"] for p in found["items"]] == [turkish]
    nothing = (
        await proposals_api.get("/v1/proposals", params={"working_group_id": wg, "q": "Fahrrad"})
    ).json()
    assert nothing["items"] == []
    odd = await proposals_api.get("/v1/proposals", params={"q": '"unclosed & | ! (:*'})
    assert odd.status_code == 200


async def test_markup_is_stored_and_returned_as_text(proposals_api, make_working_group, proposals_settings):
    wg = await make_working_group(proposals_api.app)
    title = "<script>alert('x')</script> Treffpunkt"
    proposal_id = await publish(proposals_api, proposals_settings, wg, title=title)
    public = (await proposals_api.get(f"/v1/proposals/{proposal_id}")).json()
    assert public["title"] == title


async def test_unknown_or_malformed_ids_are_404_or_422(proposals_api):
    assert (await proposals_api.get("/v1/proposals/00000000-0000-4000-8000-00000000dead")).status_code == 404
    malformed = await proposals_api.get("/v1/proposals/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.headers["content-type"].startswith("application/problem+json")
    assert (await proposals_api.get("/v1/proposals", params={"limit": 1000})).status_code == 422
