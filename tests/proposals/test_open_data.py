"""Open data and the DCAT-AP.de catalog (no personal data at all: planted names, addresses and internal
notes are searched for in every field of every set), attendance counts from meeting.attendance_counted
(the highest revision, once), accent-free search, followers' addresses on erasure, and the council
report's section per measure."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from services.proposals import handlers
from services.proposals.models import attendance_counts, inbox, measure_followers
from shared import events as ev
from shared.inbox import EventMeta
from tests.conftest import unique_email
from tests.proposals.conftest import staff_headers
from tests.proposals.test_measures import measure_body, published_with_outcome
from tests.support.events import publish_event
from tests.support.wait import eventually

SETS = ("proposals", "measures", "attendance")


def _strings(value) -> list[str]:
    """Every string anywhere in a JSON value: keys and values."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [] if value is None else [str(value)]


async def test_open_data_holds_no_personal_data_in_any_field(
    proposals_api, make_working_group, proposals_settings, infra
):
    app = proposals_api.app
    wg = await make_working_group(app, title="Arbeit und Ausbildung")
    moderator = staff_headers(proposals_settings, "moderator")
    secret = uuid.uuid4().hex[:10]
    name, email, note = f"Planted Person {secret}", unique_email(f"planted{secret}"), f"INTERN {secret}"
    pid = await published_with_outcome(
        proposals_api, proposals_settings, wg, "adopted", author_name=name, author_email=email
    )
    await proposals_api.post(
        f"/v1/moderation/proposals/{pid}/outcome",
        json={"outcome": "adopted", "public_statement": "x", "internal_note": note},
        headers=moderator,
    )
    created = await proposals_api.post("/v1/measures", json=measure_body(wg, [pid]), headers=moderator)
    measure_id = created.json()["id"]
    follower = unique_email(f"follower{secret}")
    await proposals_api.post(f"/v1/measures/{measure_id}/followers", json={"email": follower})
    await proposals_api.post(
        f"/v1/measures/{measure_id}/council-decision",
        json={
            "decided_on": "2027-03-15",
            "reference": "0456/2027",
            "decision": "adopted",
            "public_statement": "Ja.",
        },
        headers=moderator,
    )
    await proposals_api.post(
        f"/v1/measures/{measure_id}/progress",
        json={"status": "planned", "on": "2027-04-01", "public_statement": '=HYPERLINK("http://x")'},
        headers=moderator,
    )
    counted = ev.AttendanceCounted(
        working_group=ev.WorkingGroupInfo(id=wg, title="Arbeit und Ausbildung"),
        meeting=ev.MeetingInfo(number=1, starts_at=datetime(2027, 2, 1, 18, tzinfo=UTC)),
        registered=30, present=24, no_show=6, walk_ins=3, by_language={"de": 20, "tr": 7}, revision=2,
    )  # fmt: skip
    message_id = await publish_event(infra.amqp_url, counted)

    async def applied() -> bool:
        async with app.state.runtime.transaction() as session:
            return bool(await session.scalar(select(func.count()).where(inbox.c.message_id == message_id)))

    await eventually(applied, "the attendance counts to be applied")

    planted = (secret, name, email.lower(), follower.lower(), note, "moderatorin.a")
    for dataset in SETS:
        data = await proposals_api.get(f"/v1/open-data/{dataset}.json")
        assert data.status_code == 200
        assert data.headers["link"] == f'<{proposals_settings.open_data_license}>; rel="license"'
        body = data.json()
        assert body["license"] == "https://www.govdata.de/dl-de/by-2-0"
        assert body["items"], dataset
        fields = _strings(body)
        for value in planted:
            assert not [f for f in fields if value.lower() in f.lower()], (dataset, value)
        table = await proposals_api.get(f"/v1/open-data/{dataset}.csv")
        assert table.headers["content-type"].startswith("text/csv")
        cells = [
            c for row in csv.reader(io.StringIO(table.text.lstrip("\ufeff")), delimiter=";") for c in row
        ]
        for value in planted:
            assert not [c for c in cells if value.lower() in c.lower()], (dataset, value)
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")], dataset  # no formula runs

    proposals = (await proposals_api.get("/v1/open-data/proposals.json")).json()["items"]
    assert any(p["id"] == pid and p["outcome"] == "adopted" for p in proposals)
    measures = (await proposals_api.get("/v1/open-data/measures.json")).json()["items"]
    mine = next(m for m in measures if m["id"] == measure_id)
    assert (mine["council_reference"], mine["proposal_ids"], [e["status"] for e in mine["timeline"]]) == (
        "0456/2027",
        [pid],
        ["planned"],
    )
    attendance = (await proposals_api.get("/v1/open-data/attendance.json")).json()["items"]
    row = next(a for a in attendance if a["working_group_id"] == wg)
    assert (row["present"], row["walk_ins"], row["present_by_language"]) == (24, 3, {"de": 20, "tr": 7})
    assert (await proposals_api.get("/v1/open-data/people.json")).status_code == 422
    assert (await proposals_api.get("/v1/open-data/proposals.xml")).status_code == 422


async def test_attendance_keeps_the_highest_revision_and_a_redelivery_changes_nothing(proposals_api):
    app = proposals_api.app
    wg = f"wg-{uuid.uuid4().hex[:8]}"

    def counts(revision: int, present: int) -> ev.AttendanceCounted:
        return ev.AttendanceCounted(
            working_group=ev.WorkingGroupInfo(id=wg, title="T"), meeting=ev.MeetingInfo(number=2),
            registered=10, present=present, no_show=10 - present, walk_ins=0, revision=revision,
        )  # fmt: skip

    handler = handlers.attendance_handlers()["meeting.attendance_counted"]
    meta = EventMeta(str(uuid.uuid4()), "meeting.attendance_counted", None, None, 1)
    async with app.state.runtime.transaction() as session:
        await handler(session, counts(3, 8), meta)
        await handler(session, counts(2, 5), meta)  # older, later: ignored
        await handler(session, counts(3, 8), meta)
    async with app.state.runtime.transaction() as session:
        rows = (
            await session.execute(select(attendance_counts).where(attendance_counts.c.working_group_id == wg))
        ).all()
    assert [(r.revision, r.present) for r in rows] == [(3, 8)]


async def test_the_dcat_catalog_describes_every_set_and_format(proposals_api, proposals_settings):
    answer = await proposals_api.get("/v1/open-data/catalog.jsonld")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/ld+json")
    doc = json.loads(answer.text)
    context = doc["@context"]
    assert context["dcat"] == "http://www.w3.org/ns/dcat#" and context["dct"] == "http://purl.org/dc/terms/"
    assert context["dcatde"] == "http://dcat-ap.de/def/dcatde/"
    assert doc["@type"] == "dcat:Catalog"
    assert doc["dct:publisher"]["foaf:name"] == proposals_settings.open_data_publisher
    assert doc["dct:license"] == {"@id": "https://www.govdata.de/dl-de/by-2-0"}
    datasets = doc["dcat:dataset"]
    assert [d["@id"].rsplit("/", 1)[1] for d in datasets] == list(SETS)
    for d in datasets:
        assert d["@type"] == "dcat:Dataset"
        for key in ("dct:title", "dct:description", "dct:publisher", "dct:license", "dcatde:contributorID"):
            assert d[key], key
        urls = sorted(x["dcat:downloadURL"]["@id"] for x in d["dcat:distribution"])
        assert [u.rsplit(".", 1)[1] for u in urls] == ["csv", "json"]
        for dist in d["dcat:distribution"]:
            assert (
                dist["@type"] == "dcat:Distribution"
                and dist["dct:license"]["@id"] == doc["dct:license"]["@id"]
            )
            path = dist["dcat:accessURL"]["@id"].split(proposals_settings.public_url, 1)[1]
            assert (await proposals_api.get(path)).status_code == 200
    # Every compact IRI uses a prefix the context defines.
    prefixes = {k.split(":")[0] for k in _keys(doc) if ":" in k and not k.startswith("@")}
    assert prefixes <= set(context)


def _keys(value) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


async def test_search_finds_words_whatever_their_accents(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    word = uuid.uuid4().hex[:6]
    pid = await published_with_outcome(
        proposals_api, proposals_settings, wg, "adopted",
        title=f"Sprachcafé bei Familie Müller {word}",
        body=f"Ein Treffpunkt für Çay und Gespräche in der Straße {word}, für alle.",
    )  # fmt: skip
    created = await proposals_api.post(
        "/v1/measures",
        json=measure_body(
            wg, [pid], title=f"Sprachcafé Müller {word}", description=f"Café für alle {word} im Viertel."
        ),
        headers=moderator,
    )
    measure_id = created.json()["id"]
    for q in ("Sprachcafe", "Sprachcafé", "Muller", "Mueller", "Müller", "cay", "Strasse"):
        found = (
            await proposals_api.get("/v1/proposals", params={"q": f"{q} {word}", "working_group_id": wg})
        ).json()
        assert [p["id"] for p in found["items"]] == [pid], q
    for q in ("Sprachcafe", "Muller", "Mueller", "cafe"):
        found = (await proposals_api.get("/v1/measures", params={"q": f"{q} {word}"})).json()
        assert [m["id"] for m in found["items"]] == [measure_id], q
    none = (await proposals_api.get("/v1/proposals", params={"q": f"Bäckerei {word}"})).json()
    assert none["items"] == []


async def test_erasure_and_unconfirmed_followers_leave_no_address(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    pid = await published_with_outcome(proposals_api, proposals_settings, wg, "adopted")
    measure_id = (
        await proposals_api.post("/v1/measures", json=measure_body(wg, [pid]), headers=moderator)
    ).json()["id"]
    email, similar = unique_email("Follow.Me"), unique_email("follow.me")
    for address in (email, similar):
        await proposals_api.post(f"/v1/measures/{measure_id}/followers", json={"email": address})
    erasure = ev.PrivacyErasureRequested(request_id=uuid.uuid4(), email=email.upper())
    meta = EventMeta(str(uuid.uuid4()), erasure.event_type, None, None, 1)
    async with app.state.runtime.transaction() as session:
        await handlers.on_erasure_requested(session, erasure, meta)
    async with app.state.runtime.transaction() as session:
        left = (await session.execute(select(measure_followers.c.email))).scalars().all()
    assert email.lower() not in left and similar.lower() in left  # exact match only


async def test_the_council_report_has_a_section_per_measure(
    proposals_api, make_working_group, proposals_settings
):
    app = proposals_api.app
    wg = await make_working_group(app)
    moderator = staff_headers(proposals_settings, "moderator")
    pid = await published_with_outcome(proposals_api, proposals_settings, wg, "adopted")
    title = f"Maßnahme *{uuid.uuid4().hex[:6]}*"
    measure_id = (
        await proposals_api.post("/v1/measures", json=measure_body(wg, [pid], title=title), headers=moderator)
    ).json()["id"]
    await proposals_api.post(
        f"/v1/measures/{measure_id}/council-decision",
        json={
            "decided_on": "2027-03-15",
            "reference": "0789/2027",
            "decision": "rejected",
            "public_statement": "Nein.",
        },
        headers=moderator,
    )
    data = (await proposals_api.get("/v1/reports/council", headers=moderator)).json()
    section = next(m for m in data["measures"] if m["id"] == measure_id)
    assert (section["council_decision"], section["council_reference"]) == ("rejected", "0789/2027")
    md = (await proposals_api.get("/v1/reports/council", params={"format": "md"}, headers=moderator)).text
    assert f"### Maßnahme: {title.replace('*', chr(92) + '*')}" in md and "Drucksache 0789/2027" in md
    table = (
        await proposals_api.get(
            "/v1/reports/council", params={"format": "csv", "part": "measures"}, headers=moderator
        )
    ).text
    assert measure_id in table and "0789/2027" in table
