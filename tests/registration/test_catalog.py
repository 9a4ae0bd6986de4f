"""The catalog of working groups and meetings, as the city's web forms read it."""

from __future__ import annotations

from datetime import UTC, datetime


async def test_catalog_is_seeded_from_the_announcement(api):
    groups = (await api.get("/v1/working-groups")).json()
    by_id = {g["id"]: g for g in groups}
    assert by_id["sprachfoerderung"]["title"] == "Sprachförderung"
    assert {g["title"] for g in groups} >= {
        "Bildung, Beruf, Arbeit, Übergang in Arbeit, Selbständigkeit",
        "Sprachförderung",
        "Begegnung, Toleranz, Sicherheit, Integrationsprobleme",
        "Ehrenamt, Partizipation",
        "Wohnbedarfe und Wohnraumversorgung",
    }
    first, second = by_id["sprachfoerderung"]["meetings"]
    # 06.03.2019, 18 Uhr in Berlin is 17:00 UTC.
    assert datetime.fromisoformat(first["starts_at"]) == datetime(2019, 3, 6, 17, 0, tzinfo=UTC)
    assert first["starts_at"] == "2019-03-06T18:00:00+01:00"  # as announced: 18 Uhr, Berlin time
    assert "blauer Salon" in first["venue"]
    assert second["starts_at"] is None
    wohnen = by_id["wohnbedarfe-wohnraumversorgung"]["meetings"][0]
    assert datetime.fromisoformat(wohnen["starts_at"]) == datetime(2019, 3, 7, 16, 0, tzinfo=UTC)
    assert (await api.get("/v1/working-groups/nope")).status_code == 404
