"""Staff: roles, participant lists and planning figures, meeting changes, the audit log."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from services.registration.app import create_app
from services.registration.models import audit_log
from shared.auth import mint_token
from tests.conftest import running
from tests.registration.support import events_of, latest_token, pending_tokens, register
from tests.support.staff import auth


async def test_staff_endpoints_need_the_right_role(api, registration_settings):
    wg = "sprachfoerderung"
    assert (await api.get(f"/v1/working-groups/{wg}/participants")).status_code == 401
    bad = {"Authorization": "Bearer not.a.token"}
    assert (await api.get(f"/v1/working-groups/{wg}/participants", headers=bad)).status_code == 401
    staff = auth(registration_settings, "staff")
    assert (await api.get(f"/v1/working-groups/{wg}/participants", headers=staff)).status_code == 200
    assert (
        await api.patch(f"/v1/working-groups/{wg}", json={"capacity": 40}, headers=staff)
    ).status_code == 403
    expired = mint_token(registration_settings, "x", ["admin"], ttl=timedelta(seconds=-5))
    response = await api.patch(
        f"/v1/working-groups/{wg}", json={"capacity": 40}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401 and response.headers["content-type"].startswith(
        "application/problem+json"
    )


async def test_participant_list_csv_and_planning_figures(api, make_working_group, registration_settings):
    wg = await make_working_group(api.runtime, capacity=2)
    bodies = [
        {"name": '=HYPERLINK("http://evil")', "district": "Innenstadt Ost", "interpretation_language": "ar"},
        {"name": "Олена Коваленко", "language": "uk", "accessibility_needs": "Rollstuhl"},
        {"name": "Third Person", "participant_type": "expert"},
    ]
    for extra in bodies:
        reg_id, _ = await register(api, wg, **extra)
        await api.post("/v1/registrations/confirm", json={"token": await latest_token(api.runtime, reg_id)})
    staff = auth(registration_settings, "staff")
    people = (await api.get(f"/v1/working-groups/{wg}/participants", headers=staff)).json()
    assert [p["status"] for p in people] == ["confirmed", "confirmed", "waitlisted"]
    assert people[2]["waitlist_position"] == 1

    response = await api.get(f"/v1/working-groups/{wg}/participants", params={"format": "csv"}, headers=staff)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff")), delimiter=";"))
    names = [r["name"] for r in rows]
    assert "Олена Коваленко" in names
    assert '\'=HYPERLINK("http://evil")' in names  # defused formula

    async with api.runtime.transaction() as session:
        reads = (
            await session.execute(
                select(audit_log.c.subject, audit_log.c.action).where(audit_log.c.target == wg)
            )
        ).all()
    assert [tuple(r) for r in reads] == [("tester@stadt", "participants.read")] * 2

    planning = (await api.get(f"/v1/working-groups/{wg}/planning", headers=staff)).json()
    figures = planning["meetings"][0]["figures"]
    assert figures["confirmed"]["total"]["all"] == 2
    assert figures["confirmed"]["language"] == {"de": 1, "uk": 1}
    assert figures["confirmed"]["interpretation_language"] == {"ar": 1}
    assert figures["confirmed"]["accessibility_needs"]["with_needs"] == 1
    assert figures["waitlisted"]["participant_type"] == {"expert": 1}


async def test_changing_a_meeting_tells_every_confirmed_participant(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=5)
    ids = []
    for _ in range(2):
        reg_id, _ = await register(api, wg)
        await api.post("/v1/registrations/confirm", json={"token": await latest_token(api.runtime, reg_id)})
        ids.append(reg_id)
    await register(api, wg)  # pending: not told
    admin = auth(registration_settings, "admin")
    new_start = "2019-04-10T18:00:00+02:00"
    response = await api.patch(
        f"/v1/working-groups/{wg}/meetings/2",
        json={"starts_at": new_start, "venue": "Villa Jaenisch", "address": "Kaiserslautern"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["meetings"][1]["venue"] == "Villa Jaenisch"
    events = await events_of(api.runtime, "meeting.rescheduled")
    mine = [e for e in events if e["working_group"]["id"] == wg]
    assert len(mine) == 1
    assert sorted(p["registration_id"] for p in mine[0]["participants"]) == sorted(ids)
    assert mine[0]["meeting"]["sequence"] == 1
    assert datetime.fromisoformat(mine[0]["meeting"]["starts_at"]) == datetime.fromisoformat(new_start)

    cancel = await api.patch(f"/v1/working-groups/{wg}/meetings/2", json={"cancelled": True}, headers=admin)
    assert cancel.status_code == 200
    cancelled = [
        e for e in await events_of(api.runtime, "meeting.cancelled") if e["working_group"]["id"] == wg
    ]
    assert len(cancelled) == 1 and cancelled[0]["meeting"]["sequence"] == 2
    bad = await api.patch(
        f"/v1/working-groups/{wg}/meetings/2", json={"starts_at": "2019-04-10T18:00:00"}, headers=admin
    )
    assert bad.status_code == 422  # a time without offset is ambiguous


async def test_a_confirmation_right_after_a_meeting_change_on_another_replica_carries_the_new_date(
    api, make_working_group, registration_settings
):
    wg = await make_working_group(api.runtime, capacity=5)
    other = create_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    async with running(other) as replica:
        tokens = await pending_tokens(api, registration_settings, wg, 2)
        # The replica caches the catalog entry while confirming the first person.
        await replica.post("/v1/registrations/confirm", json={"token": tokens[0]})
        admin = auth(registration_settings, "admin")
        moved = "2019-05-02T17:00:00+02:00"
        # Changed through the other replica: this one's cache still holds the old entry.
        await api.patch(f"/v1/working-groups/{wg}/meetings/2", json={"starts_at": moved}, headers=admin)
        answer = await replica.post("/v1/registrations/confirm", json={"token": tokens[1]})
        assert answer.json()["status"] == "confirmed"
        [event] = await events_of(api.runtime, "registration.confirmed", registration_id=answer.json()["id"])
        second = next(m for m in event["meetings"] if m["number"] == 2)
        assert datetime.fromisoformat(second["starts_at"]) == datetime.fromisoformat(moved)


async def test_staff_changes_are_audited_and_the_audit_log_cannot_be_rewritten(
    api, make_working_group, registration_settings
):
    from sqlalchemy.exc import DBAPIError

    wg = await make_working_group(api.runtime, capacity=5)
    admin = auth(registration_settings, "admin")
    await api.patch(f"/v1/working-groups/{wg}", json={"capacity": 6}, headers=admin)
    async with api.runtime.transaction() as session:
        [entry] = (await session.execute(select(audit_log).where(audit_log.c.target == wg))).all()
    assert (entry.subject, entry.action, entry.details["capacity"]) == (
        "tester@stadt",
        "working_group.changed",
        6,
    )
    with pytest.raises(DBAPIError, match="permission denied"):
        async with api.runtime.transaction() as session:
            await session.execute(
                audit_log.update().where(audit_log.c.id == entry.id).values(subject="someone else")
            )
    with pytest.raises(DBAPIError, match="permission denied"):
        async with api.runtime.transaction() as session:
            await session.execute(audit_log.delete().where(audit_log.c.id == entry.id))
