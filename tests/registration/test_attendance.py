"""Issue 24, items 1 and 7: checking people in at a meeting's door (by registration, by the code on their
mail, walk-ins), the list for the clipboard, the counts, and attendance going with the registration while
the counts remain."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from services.registration import domain, privacy
from services.registration.models import attendance, meetings, registrations
from tests.registration.support import events_of, latest_token, register
from tests.support.staff import auth


async def _confirmed(api, wg: str, **extra) -> tuple[str, str]:
    """A confirmed registration: its id and its check-in code (from the status JSON)."""
    reg_id, _ = await register(api, wg, **extra)
    token = await latest_token(api.runtime, reg_id)
    answer = await api.post("/v1/registrations/confirm", json={"token": token})
    assert answer.json()["status"] == "confirmed", answer.text
    status = (await api.get("/v1/registrations/me", params={"token": token})).json()
    return reg_id, status["check_in_code"]


def _url(wg: str, number: int = 1) -> str:
    return f"/v1/working-groups/{wg}/meetings/{number}/attendance"


async def test_check_in_by_id_by_code_walk_in_and_twice(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime)
    staff = auth(registration_settings, "staff")
    anna, _ = await _confirmed(api, wg, name="Anna Berg", language="de")
    _, oleh_code = await _confirmed(api, wg, name="Oleh Koval", language="uk", interpretation_language="uk")
    await _confirmed(api, wg, name="Zeynep Ak", language="tr", interpretation_language="tr")
    assert len(oleh_code) == 9 and oleh_code[4] == "-"

    first = await api.post(_url(wg), json={"registration_id": anna}, headers=staff)
    assert first.status_code == 200, first.text
    assert first.json()["name"] == "Anna Berg" and first.json()["repeated"] is False
    again = await api.post(_url(wg), json={"registration_id": anna}, headers=staff)
    assert again.status_code == 200
    assert again.json()["checked_in_at"] == first.json()["checked_in_at"] and again.json()["repeated"] is True

    # Typed at the door in lower case, without the hyphen, with an O for the zero: the same code.
    typed = oleh_code.replace("-", "").lower().replace("0", "o")
    by_code = await api.post(_url(wg), json={"check_in_code": typed}, headers=staff)
    assert by_code.status_code == 200, by_code.text
    assert by_code.json()["name"] == "Oleh Koval"

    walk_in = await api.post(
        _url(wg), json={"walk_in": {"participant_type": "resident", "language": "ar"}}, headers=staff
    )
    assert walk_in.status_code == 200 and walk_in.json()["walk_ins"] == 1
    # The same walk-in sent again after a lost answer (the same Idempotency-Key) is counted once.
    key = {**staff, "Idempotency-Key": "door-device-1-walk-in-0001"}
    walk_in_body = {"walk_in": {"participant_type": "resident", "language": "ar"}}
    first_walk_in = await api.post(_url(wg), json=walk_in_body, headers=key)
    assert (await api.post(_url(wg), json=walk_in_body, headers=key)).json() == first_walk_in.json()

    listing = (await api.get(_url(wg), headers=staff)).json()
    assert listing["counts"] == {
        "registered": 3,
        "present": 4,
        "no_show": 1,
        "walk_ins": 2,
        "by_language": {"ar": 2, "de": 1, "uk": 1},
    }
    assert [e["name"] for e in listing["entries"]] == ["Anna Berg", "Oleh Koval", "Zeynep Ak"]
    assert [e["present"] for e in listing["entries"]] == [True, True, False]
    assert listing["interpreters"] == [
        {"language": "tr", "needed": 1, "present": 0},
        {"language": "uk", "needed": 1, "present": 1},
    ]
    # The staff's search at the door: by name, among this working group's registrations.
    found = (await api.get(_url(wg), params={"q": "kov"}, headers=staff)).json()
    assert [e["name"] for e in found["entries"]] == ["Oleh Koval"]

    # One event per counted person (not for the repeated check-in), the newest with the highest revision.
    counted = await events_of(api.runtime, "meeting.attendance_counted")
    mine = [e for e in counted if e["working_group"]["id"] == wg]
    assert [e["revision"] for e in mine] == [1, 2, 3, 4]
    assert mine[-1]["present"] == 4 and mine[-1]["walk_ins"] == 2 and mine[-1]["registered"] == 3
    assert "name" not in str(mine[-1]).lower().replace("working_group", "")


async def test_refusals(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime)
    other = await make_working_group(api.runtime)
    staff = auth(registration_settings, "staff")
    reg_id, code = await _confirmed(api, wg)
    foreign_id, foreign_code = await _confirmed(api, other)

    def field_of(answer) -> str:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        return answer.json()["errors"][0]["field"]

    assert field_of(await api.post(_url(wg), json={"registration_id": foreign_id}, headers=staff)) == (
        "registration_id"
    )
    assert field_of(await api.post(_url(wg), json={"check_in_code": foreign_code}, headers=staff)) == (
        "check_in_code"
    )
    assert field_of(await api.post(_url(wg), json={"check_in_code": "not a code!"}, headers=staff)) == (
        "check_in_code"
    )
    both = await api.post(_url(wg), json={"registration_id": reg_id, "check_in_code": code}, headers=staff)
    assert field_of(both) in ("registration_id", "check_in_code")
    assert (await api.post(_url(wg), json={}, headers=staff)).status_code == 422
    bad_walk_in = await api.post(
        _url(wg), json={"walk_in": {"participant_type": "resident", "language": "xx"}}, headers=staff
    )
    assert bad_walk_in.status_code == 422 and "language" in bad_walk_in.text

    token = await latest_token(api.runtime, reg_id)
    await api.post("/v1/registrations/cancel", json={"token": token})
    assert field_of(await api.post(_url(wg), json={"registration_id": reg_id}, headers=staff)) == (
        "registration_id"
    )
    assert (await api.post(_url(wg, 7), json={"check_in_code": code}, headers=staff)).status_code == 404
    assert (
        await api.post(_url("no-such-group"), json={"check_in_code": code}, headers=staff)
    ).status_code == 404
    assert (await api.post(_url(wg), json={"registration_id": reg_id})).status_code == 401
    moderator = auth(registration_settings, "moderator")
    assert (await api.get(_url(wg), headers=moderator)).status_code == 403


async def test_clipboard_csv_and_page(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime)
    staff = auth(registration_settings, "staff")
    await _confirmed(api, wg, name='=HYPERLINK("http://evil")', organization="<b>Verein</b>")
    reg_id, _ = await _confirmed(api, wg, name="Ärzte Bauer")
    await api.post(_url(wg), json={"registration_id": reg_id}, headers=staff)

    answer = await api.get(_url(wg), params={"format": "csv"}, headers=staff)
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text.lstrip("\ufeff")), delimiter=";"))
    assert [r["name"] for r in rows] == ['\'=HYPERLINK("http://evil")', "Ärzte Bauer"]
    assert "signature" in rows[0] and rows[1]["present"] == "True"

    page = await api.get(_url(wg), headers={**staff, "Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;Verein&lt;/b&gt;" in page.text and "<b>Verein" not in page.text
    assert "Unterschrift" in page.text and "content-security-policy" in page.headers


async def test_status_page_and_json_show_the_code_with_a_qr(api, make_working_group):
    wg = await make_working_group(api.runtime)
    reg_id, code = await _confirmed(api, wg)
    token = await latest_token(api.runtime, reg_id)
    page = await api.get("/v1/registrations/me", params={"token": token}, headers={"Accept": "text/html"})
    assert code in page.text and '<svg role="img"' in page.text and "<title>" in page.text
    assert "style=" not in page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    confirmed = [
        e for e in await events_of(api.runtime, "registration.confirmed") if e["registration_id"] == reg_id
    ]
    assert confirmed[0]["check_in_code"] == code
    assert domain.normalise_check_in_code(code) == code.replace("-", "")


async def test_erasure_removes_attendance_but_keeps_the_counts(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime)
    staff = auth(registration_settings, "staff")
    reg_id, _ = await register(api, wg, email="gone@example.org")
    token = await latest_token(api.runtime, reg_id)
    await api.post("/v1/registrations/confirm", json={"token": token})
    await api.post(_url(wg), json={"registration_id": reg_id}, headers=staff)
    await api.post(
        _url(wg), json={"walk_in": {"participant_type": "expert", "language": "de"}}, headers=staff
    )

    async with api.runtime.transaction() as session:
        await privacy.erase_address(session, registration_settings, api.runtime.catalog, "gone@example.org")
    async with api.runtime.transaction() as session:
        left = await session.scalar(
            select(func.count()).select_from(attendance).where(attendance.c.working_group_id == wg)
        )
        name = await session.scalar(select(registrations.c.name).where(registrations.c.id == reg_id))
    assert left == 0 and name is None
    counts = (await api.get(_url(wg), headers=staff)).json()["counts"]
    assert counts["present"] == 2 and counts["walk_ins"] == 1 and counts["by_language"] == {"de": 2}
    assert (await api.get(_url(wg), headers=staff)).json()["entries"] == []


async def test_attendance_goes_with_the_registration_after_the_last_meeting(
    api, make_working_group, registration_settings
):
    """The retention job (180 days after the last meeting) takes the entries with the personal data; the
    meeting's counts stay."""
    wg = await make_working_group(api.runtime)
    staff = auth(registration_settings, "staff")
    reg_id, _ = await _confirmed(api, wg, language="uk")
    assert (await api.post(_url(wg), json={"registration_id": reg_id}, headers=staff)).status_code == 200
    long_ago = datetime.now(UTC) - timedelta(days=400)
    async with api.runtime.transaction() as session:
        await session.execute(
            update(meetings).where(meetings.c.working_group_id == wg).values(starts_at=long_ago)
        )
    async with api.runtime.transaction() as session:
        assert await privacy.anonymise_after_last_meeting(session, registration_settings) >= 1
    async with api.runtime.transaction() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(attendance)
            .where(attendance.c.registration_id == uuid.UUID(reg_id))
        )
    assert left == 0
    api.runtime.catalog.invalidate(wg)
    counts = (await api.get(_url(wg), headers=staff)).json()["counts"]
    assert counts["present"] == 1 and counts["by_language"] == {"uk": 1}
