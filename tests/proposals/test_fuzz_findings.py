"""What the schemathesis run found, kept as plain regression tests."""

from __future__ import annotations

from tests.proposals.conftest import staff_headers


async def test_a_district_cannot_be_renamed_to_null(proposals_api, proposals_settings):
    admin = staff_headers(proposals_settings, "admin")
    for body in ({"name": None}, {"active": None}):
        answer = await proposals_api.patch("/v1/districts/innenstadt-ost", json=body, headers=admin)
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("application/problem+json")
    kept = await proposals_api.patch("/v1/districts/innenstadt-ost", json={}, headers=admin)
    assert kept.status_code == 200
