"""Bad input is a 422 (or 413, 429) problem naming the field, never a 500."""

from __future__ import annotations

import pytest

from services.registration.app import create_app
from tests.conftest import registration_body, running


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"privacy_consent": False}, "privacy_consent"),
        ({"privacy_consent": None}, "privacy_consent"),
        ({"working_group_id": "no-such-group"}, "working_group_id"),
        ({"language": "fr"}, "language"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b.org\r\nBcc: x@evil.org"}, "email"),
        ({"name": "x" * 500}, "name"),
        ({"name": "Eve\r\nBcc: victim@example.org"}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"name": "   "}, "name"),
        ({"participant_type": "admin"}, "participant_type"),
        ({"surprise": 1}, "surprise"),
        ({"accessibility_needs": "x" * 5000}, "accessibility_needs"),
    ],
)
async def test_bad_input_gets_422_problem_naming_the_field(api, change, field):
    body = {**registration_body(), **change}
    body = {k: v for k, v in body.items() if not (k == "privacy_consent" and v is None)}
    response = await api.post("/v1/registrations", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert field in [e["field"] for e in problem["errors"]]
    assert "Traceback" not in response.text


async def test_oversized_and_malformed_bodies(api):
    huge = await api.post(
        "/v1/registrations",
        content=b'{"name": "' + b"x" * 1_000_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("application/problem+json")
    broken = await api.post(
        "/v1/registrations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    wrong_type = await api.post(
        "/v1/registrations/confirm", content=b"token=1", headers={"Content-Type": "text/xml"}
    )
    assert wrong_type.status_code == 415
    bad_token = await api.post("/v1/registrations/confirm", json={"token": "a\nb"})
    assert bad_token.status_code == 422 and bad_token.json()["errors"][0]["field"] == "token"


async def test_public_registrations_are_rate_limited(registration_settings):
    app = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 3}))
    async with running(app) as client:
        codes = [
            (await client.post("/v1/registrations", json=registration_body())).status_code for _ in range(5)
        ]
    assert codes[:3] == [202, 202, 202] and codes[3:] == [429, 429]


async def test_a_form_with_too_many_fields_is_a_422_not_a_500(api):
    body = "&".join(f"f{i}=x" for i in range(7))
    response = await api.post(
        "/v1/registrations/confirm",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
