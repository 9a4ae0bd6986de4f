"""Issue 21, item 8a: every answer of an endpoint that takes a private link's token — JSON, problem+json
or page, success or not — is ``Cache-Control: no-store`` and ``Vary: Accept`` (they negotiate HTML or
JSON, and what they show is for the link's holder only)."""

from __future__ import annotations

import uuid

from sqlalchemy import insert

from services.proposals.app import create_app as proposals_app
from services.proposals.models import working_groups as proposals_working_groups
from shared.tokens import token_for
from tests.conftest import running
from tests.proposals.conftest import proposal_body
from tests.registration.support import latest_token, register

BROWSER = {"Accept": "text/html"}
UNKNOWN = "x" * 43


def assert_private(answer, what: str) -> None:
    assert answer.headers.get("cache-control") == "no-store", (what, answer.status_code, dict(answer.headers))
    assert "accept" in answer.headers.get("vary", "").lower(), (
        what,
        answer.status_code,
        dict(answer.headers),
    )


async def test_registration_and_erasure_link_answers_are_never_stored(api, make_working_group):
    wg = await make_working_group(api.runtime)
    registration_id, _ = await register(api, wg)
    token = await latest_token(api.runtime, registration_id)
    for accept in ({}, BROWSER):
        for tok in (token, UNKNOWN):
            answer = await api.get("/v1/registrations/me", params={"token": tok}, headers=accept)
            assert_private(answer, f"GET me {accept} {tok == token}")
            answer = await api.get("/v1/registrations/me/calendar.ics", params={"token": tok}, headers=accept)
            assert_private(answer, "GET calendar")
        for path in (
            "/v1/registrations/confirm",
            "/v1/registrations/cancel",
            "/v1/privacy/erasure-requests/confirm",
        ):
            assert_private(await api.get(path, params={"token": UNKNOWN}, headers=accept), f"GET {path}")
            assert_private(await api.post(path, json={"token": UNKNOWN}, headers=accept), f"POST {path}")
        state = await api.get(
            f"/v1/privacy/erasure-requests/{uuid.uuid4()}", params={"token": UNKNOWN}, headers=accept
        )
        assert_private(state, "GET erasure state")
    # A success in JSON too: the confirmation's state.
    confirmed = await api.post("/v1/registrations/confirm", json={"token": token})
    assert confirmed.status_code == 200 and confirmed.headers["content-type"] == "application/json"
    assert_private(confirmed, "POST confirm (JSON)")
    me = await api.get("/v1/registrations/me", params={"token": token})
    assert me.status_code == 200
    assert_private(me, "GET me (JSON)")
    # Bad input is private as well: a malformed token is a 422 problem.
    assert_private(await api.get("/v1/registrations/me", params={"token": "!"}), "GET me 422")


async def test_proposal_author_answers_are_never_stored(proposals_settings):
    app = proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as api:
        wg = f"wg-{uuid.uuid4().hex[:10]}"
        async with app.state.runtime.transaction() as session:
            await session.execute(insert(proposals_working_groups).values(id=wg, title="Arbeitskreis"))
        created = await api.post("/v1/proposals", json=proposal_body(wg, author_email="a@example.org"))
        token = token_for(app.state.runtime.settings.token_secret, uuid.UUID(created.json()["id"]))
        for accept in ({}, BROWSER):
            for tok in (token, UNKNOWN):
                view = await api.get("/v1/proposals/mine", params={"token": tok}, headers=accept)
                assert_private(view, f"GET mine {accept} {tok == token}")
            edit = await api.post(
                "/v1/proposals/mine/edit", json={"token": UNKNOWN, "title": "x"}, headers=accept
            )
            assert_private(edit, "POST edit")
        view = await api.get("/v1/proposals/mine", params={"token": token})
        assert view.status_code == 200 and view.headers["content-type"] == "application/json"
        withdrawn = await api.post("/v1/proposals/mine/withdraw", json={"token": token})
        assert withdrawn.status_code == 200
        assert_private(withdrawn, "POST withdraw (JSON)")
