"""The council report: counts per working group and district by status and outcome, every published
proposal with its outcome and statements; CSV safe for spreadsheets, Markdown safe for the papers."""

from __future__ import annotations

import csv
import io

from tests.proposals.conftest import proposal_body, staff_headers


async def test_the_report_counts_and_lists_what_the_council_needs(
    proposals_api, make_working_group, proposals_settings
):
    wg = await make_working_group(proposals_api.app, title="Wohnbedarfe und Wohnraumversorgung")
    moderator = staff_headers(proposals_settings, "moderator")

    async def proposal(**overrides) -> str:
        return (await proposals_api.post("/v1/proposals", json=proposal_body(wg, **overrides))).json()["id"]

    async def decision(proposal_id: str, **body) -> None:
        answer = await proposals_api.post(
            f"/v1/moderation/proposals/{proposal_id}/decision",
            json=body,
            headers={**moderator, "If-Match": "1"},
        )
        assert answer.status_code == 200, answer.text

    hostile = '=HYPERLINK("http://evil.example") <b>fett</b> **laut**'
    adopted = await proposal(title="Wohnungstausch für Familien", body=hostile + " und mehr Text dazu.")
    await decision(adopted, decision="publish", public_statement="Danke für den Vorschlag.")
    await proposals_api.post(
        f"/v1/moderation/proposals/{adopted}/outcome",
        json={"outcome": "adopted", "public_statement": "Wird umgesetzt."},
        headers=moderator,
    )
    open_one = await proposal(title="Beratung im Stadtteil", district_id="betzenberg")
    await decision(open_one, decision="publish")
    rejected = await proposal(title="Etwas ganz anderes")
    await decision(rejected, decision="reject", public_statement="Gehört nicht zum Thema.")
    await proposal(title="Wartet noch auf Prüfung")

    data = (await proposals_api.get("/v1/reports/council", headers=moderator)).json()
    group = next(g for g in data["working_groups"] if g["id"] == wg)
    assert group["counts"]["by_status"] == {
        "submitted": 1,
        "published": 2,
        "rejected": 1,
        "changes_requested": 0,
        "duplicate": 0,
        "withdrawn": 0,
    }
    assert group["counts"]["by_outcome"]["adopted"] == 1
    by_district = {d["id"]: d["counts"]["by_status"] for d in group["districts"]}
    assert by_district["innenstadt-ost"]["published"] == 1 and by_district["betzenberg"]["published"] == 1
    listed = {p["id"]: p for p in group["proposals"]}
    assert set(listed) == {adopted, open_one}
    assert listed[adopted]["outcome"] == "adopted"
    assert listed[adopted]["outcome_statement"] == "Wird umgesetzt."
    assert listed[adopted]["public_statement"] == "Danke für den Vorschlag."
    assert listed[open_one]["outcome"] is None

    as_csv = await proposals_api.get("/v1/reports/council", params={"format": "csv"}, headers=moderator)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text.lstrip("\ufeff")), delimiter=";"))
    mine = [r for r in rows if r["working_group"] == "Wohnbedarfe und Wohnraumversorgung"]
    assert {r["id"] for r in mine} == {adopted, open_one}
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values() if cell)
    counts_csv = await proposals_api.get(
        "/v1/reports/council", params={"format": "csv", "part": "counts"}, headers=moderator
    )
    assert "Wohnbedarfe und Wohnraumversorgung" in counts_csv.text

    md = (await proposals_api.get("/v1/reports/council", params={"format": "md"}, headers=moderator)).text
    assert "## Arbeitskreis Wohnbedarfe und Wohnraumversorgung" in md
    assert "### Wohnungstausch für Familien" in md
    assert "<b>" not in md and "&lt;b&gt;" in md
    assert "**laut**" not in md
    assert "Ergebnis: angenommen" in md and "Wird umgesetzt" in md
    assert "Etwas ganz anderes" not in md and "Wartet noch" not in md
