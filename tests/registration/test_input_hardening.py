"""Input and output edges: deep JSON, strict consent, bidi overrides, undeliverable addresses, security
headers on every response, no bound parameters in database errors."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import registration_body

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "path", ["/v1/registrations/confirm", "/v1/registrations/cancel", "/v1/registrations"]
)
async def test_deeply_nested_json_is_refused_not_a_500(api, path):
    response = await api.post(path, content=DEEP, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    nested = b'{"token": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"
    response = await api.post(path, content=nested, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("consent", ["yes", 1, "on", "true", None, False])
async def test_privacy_consent_is_only_json_true(api, consent):
    response = await api.post("/v1/registrations", json=registration_body(privacy_consent=consent))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["privacy_consent"]


@pytest.mark.parametrize("char", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u202a"])
@pytest.mark.parametrize("field", ["name", "accessibility_needs", "organization"])
async def test_bidi_overrides_are_refused_in_free_text(api, char, field):
    response = await api.post(
        "/v1/registrations", json=registration_body(**{field: f"Rollstuhl {char}gnitset"})
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_arabic_and_joiners_stay_allowed(api, make_working_group):
    wg = await make_working_group(api.runtime)
    body = registration_body(
        working_group_id=wg, name="فاطمة الزهراء", accessibility_needs="كرسي متحرك\nسطر ثانٍ"
    )
    assert (await api.post("/v1/registrations", json=body)).status_code == 202


@pytest.mark.parametrize("email", ["jürgen@example.org", "мария@example.org", "عمر@example.org"])
async def test_addresses_the_mailer_cannot_send_to_are_refused(api, email):
    response = await api.post("/v1/registrations", json=registration_body(email=email))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["email"]


async def test_pages_and_answers_carry_security_headers(api):
    page = await api.get("/v1/registrations/confirm", params={"token": "x" * 43})
    for response in (page, await api.get("/v1/working-groups"), await api.get("/healthz")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    docs = await api.get("/docs")
    assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    # The whole policy of /docs: tests/foundation/test_api_docs.py
    assert "script-src 'self';" in docs.headers["content-security-policy"]


async def test_database_errors_never_carry_bound_parameters(api):
    secret = "Ayşe Geheim, Rollstuhl"
    with pytest.raises(DBAPIError) as failed:
        async with api.runtime.transaction() as session:
            await session.execute(text("SELECT CAST(:value AS text), 1 / 0"), {"value": secret})
    assert "division by zero" in str(failed.value)
    assert secret not in str(failed.value) and "parameters hidden" in str(failed.value)
