"""Moderation: the queue oldest first with its counts, decisions on a named version, public reasons,
internal notes that stay internal, merging duplicates, outcomes, and who may do what."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.proposals.conftest import proposal_body, staff_headers


async def submit(api, wg: str, **overrides) -> str:
    answer = await api.post("/v1/proposals", json=proposal_body(wg, **overrides))
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


async def decide(api, settings, proposal_id: str, version, subject: str = "moderatorin.a", **body):
    headers = staff_headers(settings, "moderator", subject=subject)
    if version is not None:
        headers["If-Match"] = f'"{version}"'
    return await api.post(f"/v1/moderation/proposals/{proposal_id}/decision", json=body, headers=headers)


async def test_the_queue_serves_the_oldest_first_with_filters_and_keyset_pages(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg, other = await make_working_group(app), await make_working_group(app)
    ids = [await submit(proposals_api, wg, title=f"Vorschlag Nummer {i}") for i in range(5)]
    await submit(proposals_api, other)
    await submit(proposals_api, wg, district_id="betzenberg")
    moderator = staff_headers(proposals_settings, "moderator")

    seen, cursor = [], None
    while True:
        params = {"working_group_id": wg, "district_id": "innenstadt-ost", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await proposals_api.get("/v1/moderation/queue", params=params, headers=moderator)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    counts = (await proposals_api.get("/v1/moderation/counts", headers=moderator)).json()
    mine = {
        (c["working_group_id"], c["district_id"]): c["count"]
        for c in counts["counts"]
        if c["status"] == "submitted"
    }
    assert (
        mine[(wg, "innenstadt-ost")] == 5
        and mine[(wg, "betzenberg")] == 1
        and mine[(other, "innenstadt-ost")] == 1
    )
    assert counts["waiting"] >= 7
    assert counts["oldest_waiting_age_seconds"] >= 0

    bad = await proposals_api.get("/v1/moderation/queue", params={"cursor": "nonsense"}, headers=moderator)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


async def test_a_decision_needs_the_current_version_stale_is_412_missing_is_428(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    proposal_id = await submit(proposals_api, wg)
    view = await proposals_api.get(
        f"/v1/moderation/proposals/{proposal_id}", headers=staff_headers(proposals_settings, "moderator")
    )
    assert view.headers["ETag"] == '"1"' and view.json()["version"] == 1

    missing = await decide(proposals_api, proposals_settings, proposal_id, None, decision="publish")
    assert missing.status_code == 428
    stale = await decide(proposals_api, proposals_settings, proposal_id, 7, decision="publish")
    assert stale.status_code == 412
    ok = await decide(proposals_api, proposals_settings, proposal_id, 1, decision="publish")
    assert ok.status_code == 200 and ok.json()["status"] == "published" and ok.headers["ETag"] == '"2"'
    again = await decide(
        proposals_api, proposals_settings, proposal_id, 2, decision="reject", public_statement="x"
    )
    assert again.status_code == 409
    assert "submitted" in again.json()["detail"]


async def test_two_moderators_deciding_the_same_version_never_overwrite_each_other(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    for _ in range(5):
        proposal_id = await submit(proposals_api, wg)
        answers = await asyncio.gather(
            decide(proposals_api, proposals_settings, proposal_id, 1, subject="a", decision="publish"),
            decide(
                proposals_api,
                proposals_settings,
                proposal_id,
                1,
                subject="b",
                decision="reject",
                public_statement="Passt nicht",
            ),
        )
        assert sorted(a.status_code for a in answers) == [200, 412]
        winner = next(a for a in answers if a.status_code == 200).json()
        history = [h for h in winner["history"] if h["actor"] == "moderator"]
        assert len(history) == 1 and history[0]["to_status"] == winner["status"]


async def test_every_no_owes_a_public_statement(proposals_api, make_working_group, proposals_settings):
    wg = await make_working_group(proposals_api.app)
    proposal_id = await submit(proposals_api, wg)
    for decision in ("reject", "request_changes", "mark_duplicate"):
        answer = await decide(
            proposals_api, proposals_settings, proposal_id, 1, decision=decision, public_statement=" "
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "public_statement"


async def test_internal_notes_stay_internal_and_public_statements_are_shown(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    proposal_id = await submit(proposals_api, wg)
    note = f"Interner Hinweis {uuid.uuid4().hex}"
    statement = "Danke! Wir nehmen das in den Arbeitskreis mit."
    answer = await decide(
        proposals_api,
        proposals_settings,
        proposal_id,
        1,
        decision="publish",
        public_statement=statement,
        internal_note=note,
    )
    assert answer.status_code == 200
    assert answer.json()["history"][-1]["internal_note"] == note

    public = await proposals_api.get(f"/v1/proposals/{proposal_id}")
    assert public.status_code == 200
    assert public.json()["public_statement"] == statement
    assert note not in public.text
    listed = await proposals_api.get("/v1/proposals", params={"working_group_id": wg})
    assert note not in listed.text and "history" not in listed.text


async def test_a_duplicate_is_merged_into_a_published_proposal(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    original, duplicate, unpublished = [await submit(proposals_api, wg) for _ in range(3)]
    assert (
        await decide(proposals_api, proposals_settings, original, 1, decision="publish")
    ).status_code == 200

    into_unpublished = await decide(
        proposals_api,
        proposals_settings,
        duplicate,
        1,
        decision="mark_duplicate",
        public_statement="Gibt es schon",
        duplicate_of=unpublished,
    )
    assert (
        into_unpublished.status_code == 422
        and into_unpublished.json()["errors"][0]["field"] == "duplicate_of"
    )
    into_itself = await decide(
        proposals_api,
        proposals_settings,
        duplicate,
        1,
        decision="mark_duplicate",
        public_statement="Gibt es schon",
        duplicate_of=duplicate,
    )
    assert into_itself.status_code == 422

    merged = await decide(
        proposals_api,
        proposals_settings,
        duplicate,
        1,
        decision="mark_duplicate",
        public_statement="Gibt es schon",
        duplicate_of=original,
    )
    assert merged.status_code == 200
    assert merged.json()["status"] == "duplicate" and merged.json()["duplicate_of"] == original
    target = (await proposals_api.get(f"/v1/proposals/{original}")).json()
    assert target["merged_duplicates"] == 1
    assert (await proposals_api.get(f"/v1/proposals/{duplicate}")).status_code == 404
    history = (
        await proposals_api.get(
            f"/v1/moderation/proposals/{original}", headers=staff_headers(proposals_settings, "moderator")
        )
    ).json()["history"]
    assert history[-1]["action"] == "duplicate_merged" and history[-1]["details"] == {"duplicate": duplicate}


async def test_outcomes_are_decided_once_for_published_proposals(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    proposal_id = await submit(proposals_api, wg)
    moderator = staff_headers(proposals_settings, "moderator")
    url = f"/v1/moderation/proposals/{proposal_id}/outcome"
    early = await proposals_api.post(url, json={"outcome": "adopted"}, headers=moderator)
    assert early.status_code == 409
    await decide(proposals_api, proposals_settings, proposal_id, 1, decision="publish")
    without_reason = await proposals_api.post(url, json={"outcome": "not_adopted"}, headers=moderator)
    assert without_reason.status_code == 422
    decided = await proposals_api.post(
        url, json={"outcome": "not_adopted", "public_statement": "Dafür fehlt das Geld."}, headers=moderator
    )
    assert decided.status_code == 200
    public = (await proposals_api.get(f"/v1/proposals/{proposal_id}")).json()
    assert (public["outcome"], public["outcome_statement"]) == ("not_adopted", "Dafür fehlt das Geld.")
    twice = await proposals_api.post(url, json={"outcome": "adopted"}, headers=moderator)
    assert twice.status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "role", "expected"),
    [
        ("GET", "/v1/moderation/queue", None, 401),
        ("GET", "/v1/moderation/queue", "staff", 403),
        ("GET", "/v1/moderation/queue", "moderator", 200),
        ("GET", "/v1/moderation/queue", "admin", 200),
        ("GET", "/v1/moderation/counts", "staff", 403),
        ("GET", "/v1/reports/council", "staff", 403),
        ("GET", "/v1/reports/council", "moderator", 200),
        ("POST", "/v1/districts", "moderator", 403),
        ("GET", "/v1/districts?include_retired=true", "moderator", 403),
        ("GET", "/v1/districts?include_retired=true", "admin", 200),
        ("GET", "/v1/districts?include_retired=true", None, 401),
    ],
)
async def test_roles(proposals_api, proposals_settings, method, path, role, expected):
    headers = staff_headers(proposals_settings, role) if role else {}
    body = {"id": "x-quartier", "name": "X"} if method == "POST" else None
    answer = await proposals_api.request(method, path, json=body, headers=headers)
    assert answer.status_code == expected, answer.text
    if expected >= 400:
        assert answer.headers["content-type"].startswith("application/problem+json")
