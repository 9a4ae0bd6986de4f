"""The public door for erasure requests and the admin route: same answer for known and unknown
addresses, one mail per address and interval, a GET that changes nothing, audited admin starts."""

from __future__ import annotations

import re

from sqlalchemy import select

from services.registration.app import create_app as registration_app
from services.registration.models import audit_log, erasure_requests, outbox
from services.registration.privacy import email_hash
from shared.auth import mint_token
from tests.conftest import registration_body, running, unique_email


def _token(payload: dict) -> str:
    return re.search(r"token=([A-Za-z0-9_\-]+)", payload["confirm_url"]).group(1)


async def _verification_events(app, settings, email: str) -> list[dict]:
    async with app.state.runtime.transaction() as session:
        rows = (
            await session.execute(
                select(outbox.c.payload).where(outbox.c.event_type == "privacy.erasure_request_submitted")
            )
        ).scalars()
        return [p for p in rows if p["recipient"]["email"].lower() == email.lower()]


async def test_known_and_unknown_addresses_get_the_same_answer_and_one_mail_per_interval(
    registration_settings,
):
    app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as api:
        known = unique_email("known")
        assert (await api.post("/v1/registrations", json=registration_body(email=known))).status_code == 202
        unknown = unique_email("unknown")
        answers = [
            await api.post("/v1/privacy/erasure-requests", json={"email": address})
            for address in (known, unknown, known.upper(), unknown)
        ]
        assert {a.status_code for a in answers} == {202}
        assert {a.content for a in answers} == {b'{"status":"pending_verification"}'}
        # One verification mail per address, however often (and in whichever case) it is posted.
        assert len(await _verification_events(app, registration_settings, known)) == 1
        assert len(await _verification_events(app, registration_settings, unknown)) == 1
        # Nothing a resident types reaches a mail header: CR/LF and unknown fields are refused.
        for body in (
            {"email": "a@example.org\r\nBcc: x@example.org"},
            {"email": known, "extra": 1},
            {"email": known, "language": "fr"},
            {},
        ):
            refused = await api.post("/v1/privacy/erasure-requests", json=body)
            assert refused.status_code == 422
            assert refused.headers["content-type"].startswith("application/problem+json")


async def test_the_link_page_changes_nothing_and_confirming_twice_answers_alike(registration_settings):
    app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as api:
        email = unique_email("twice")
        await api.post("/v1/privacy/erasure-requests", json={"email": email, "language": "uk"})
        token = _token((await _verification_events(app, registration_settings, email))[0])

        page = await api.get("/v1/privacy/erasure-requests/confirm", params={"token": token})
        assert page.status_code == 200 and 'lang="uk"' in page.text
        assert page.headers["cache-control"] == "no-store"
        async with app.state.runtime.transaction() as session:
            status = await session.scalar(
                select(erasure_requests.c.status).where(
                    erasure_requests.c.email_hash == email_hash(registration_settings, email)
                )
            )
        assert status == "pending_verification"

        first = await api.post("/v1/privacy/erasure-requests/confirm", json={"token": token})
        second = await api.post("/v1/privacy/erasure-requests/confirm", json={"token": token})
        assert first.status_code == second.status_code == 202
        assert first.json()["request_id"] == second.json()["request_id"]
        request_id = first.json()["request_id"]
        async with app.state.runtime.transaction() as session:
            started = (
                await session.execute(
                    select(outbox.c.payload).where(outbox.c.event_type == "privacy.erasure_requested")
                )
            ).scalars()
            assert [p for p in started if p["request_id"] == request_id] != []

        state = await api.get(f"/v1/privacy/erasure-requests/{request_id}", params={"token": token})
        assert state.status_code == 200 and state.json()["status"] in ("erasing", "completed")
        wrong = await api.get(f"/v1/privacy/erasure-requests/{request_id}", params={"token": "x" * 43})
        assert wrong.status_code == 404
        unknown = await api.post("/v1/privacy/erasure-requests/confirm", json={"token": "y" * 43})
        assert unknown.status_code == 404
        form = await api.post(
            "/v1/privacy/erasure-requests/confirm",
            content=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 202 and form.headers["content-type"].startswith("text/html")


async def test_admin_starts_an_erasure_by_letter_audited_without_the_address(registration_settings):
    app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(app) as api:
        email = unique_email("Letter")
        body = {"email": email, "reference": "Brief vom 3. Mai, Az. 12-345"}
        for role in ("staff", "moderator"):
            headers = {"Authorization": f"Bearer {mint_token(registration_settings, 'x', [role])}"}
            assert (await api.post("/v1/privacy/erasures", json=body, headers=headers)).status_code == 403
        assert (await api.post("/v1/privacy/erasures", json=body)).status_code == 401

        admin = {"Authorization": f"Bearer {mint_token(registration_settings, 'it.stadt', ['admin'])}"}
        answer = await api.post("/v1/privacy/erasures", json=body, headers=admin)
        assert answer.status_code == 202
        request_id = answer.json()["request_id"]
        async with app.state.runtime.transaction() as session:
            entry = (await session.execute(select(audit_log).where(audit_log.c.target == request_id))).one()
        assert (entry.subject, entry.action) == ("it.stadt", "privacy.erasure_started")
        assert entry.details == {"reference": body["reference"]}
        assert email.lower() not in str(entry).lower()
        state = await api.get(f"/v1/privacy/erasures/{request_id}", headers=admin)
        assert state.status_code == 200 and state.json()["status"] in ("erasing", "completed")
