"""Intake: what a resident may send, what is refused with a field-level 422, and that nothing is public
before a moderator publishes it."""

from __future__ import annotations

import pytest

from tests.proposals.conftest import proposal_body, staff_headers


async def test_a_valid_proposal_is_accepted_and_waits_unseen_in_the_moderation_queue(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    answer = await proposals_api.post("/v1/proposals", json=proposal_body(wg))
    assert answer.status_code == 202
    assert answer.json()["status"] == "submitted"
    proposal_id = answer.json()["id"]

    assert (await proposals_api.get(f"/v1/proposals/{proposal_id}")).status_code == 404
    listed = (await proposals_api.get("/v1/proposals", params={"working_group_id": wg})).json()
    assert listed == {"items": [], "next_cursor": None}

    queue = await proposals_api.get(
        "/v1/moderation/queue",
        params={"working_group_id": wg},
        headers=staff_headers(proposals_settings, "moderator"),
    )
    assert [item["id"] for item in queue.json()["items"]] == [proposal_id]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": "Kurz"}, "title"),
        ({"title": "x" * 151}, "title"),
        ({"body": "zu kurz"}, "body"),
        ({"body": "x" * 5001}, "body"),
        ({"working_group_id": "gibt-es-nicht"}, "working_group_id"),
        ({"district_id": "gibt-es-nicht"}, "district_id"),
        ({"language": "fr"}, "language"),
        ({"privacy_consent": False}, "privacy_consent"),
        ({"privacy_consent": "yes"}, "privacy_consent"),
        ({"privacy_consent": 1}, "privacy_consent"),
        ({"privacy_consent": "true"}, "privacy_consent"),
        ({"author_email": "not-an-address"}, "author_email"),
        ({"title": "Zeile eins\r\nBcc: opfer@example.org"}, "title"),
        ({"author_name": "Name\nBcc: x@example.org"}, "author_name"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_bad_input_gets_a_422_naming_the_field(proposals_api, make_working_group, change, field):
    wg = await make_working_group(proposals_api.app)
    answer = await proposals_api.post("/v1/proposals", json=proposal_body(wg, **change))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in answer.json()["errors"]]


async def test_consent_is_required(proposals_api, make_working_group):
    wg = await make_working_group(proposals_api.app)
    body = proposal_body(wg)
    del body["privacy_consent"]
    answer = await proposals_api.post("/v1/proposals", json=body)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "privacy_consent"


async def test_broken_bodies_get_problem_json_never_a_500(proposals_api):
    for content, content_type in (
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
    ):
        answer = await proposals_api.post(
            "/v1/proposals", content=content, headers={"Content-Type": content_type}
        )
        assert answer.status_code == 422, (content, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    # A form-encoded body is the resident form's (API.md "Forms for residents"): the form again, 422.
    form = await proposals_api.post(
        "/v1/proposals", content=b"title=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 422 and form.headers["content-type"].startswith("text/html")


async def test_a_retired_district_takes_no_new_proposals_but_keeps_its_own(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    admin = staff_headers(proposals_settings, "admin", subject="admin.b")
    created = await proposals_api.post(
        "/v1/districts", json={"id": f"neu-{wg[-6:]}", "name": "Neues Quartier"}, headers=admin
    )
    assert created.status_code == 201, created.text
    district = created.json()["id"]
    first = await proposals_api.post("/v1/proposals", json=proposal_body(wg, district_id=district))
    assert first.status_code == 202

    retired = await proposals_api.patch(f"/v1/districts/{district}", json={"active": False}, headers=admin)
    assert retired.json()["active"] is False
    assert district not in [d["id"] for d in (await proposals_api.get("/v1/districts")).json()]

    second = await proposals_api.post("/v1/proposals", json=proposal_body(wg, district_id=district))
    assert second.status_code == 422
    assert second.json()["errors"][0]["field"] == "district_id"

    moderator = staff_headers(proposals_settings, "moderator")
    queue = (
        await proposals_api.get("/v1/moderation/queue", params={"district_id": district}, headers=moderator)
    ).json()
    assert [i["id"] for i in queue["items"]] == [first.json()["id"]]
    assert queue["items"][0]["district"] == {"id": district, "name": "Neues Quartier"}


async def test_the_honeypot_answers_like_success_and_stores_nothing(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    answer = await proposals_api.post("/v1/proposals", json=proposal_body(wg, website="http://spam.example"))
    assert answer.status_code == 202
    queue = await proposals_api.get(
        "/v1/moderation/queue",
        params={"working_group_id": wg},
        headers=staff_headers(proposals_settings, "moderator"),
    )
    assert queue.json()["items"] == []


async def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app)
    headers = {"Idempotency-Key": f"key-{wg}"}
    first = await proposals_api.post("/v1/proposals", json=proposal_body(wg), headers=headers)
    again = await proposals_api.post("/v1/proposals", json=proposal_body(wg), headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    other = await proposals_api.post(
        "/v1/proposals", json=proposal_body(wg, title="Ein anderer Titel"), headers=headers
    )
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    queue = await proposals_api.get(
        "/v1/moderation/queue",
        params={"working_group_id": wg},
        headers=staff_headers(proposals_settings, "moderator"),
    )
    assert len(queue.json()["items"]) == 1


async def test_a_client_over_the_rate_limit_gets_429_with_retry_after(proposals_settings, make_working_group):
    from services.proposals.app import create_app
    from tests.conftest import running

    app = create_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 3}))
    async with running(app) as api:
        wg = await make_working_group(app)
        codes = [(await api.post("/v1/proposals", json=proposal_body(wg))).status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        limited = await api.post("/v1/proposals", json=proposal_body(wg))
        assert int(limited.headers["Retry-After"]) > 0
