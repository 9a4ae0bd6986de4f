"""Check-in at the door through the console (API.md "After the meetings"): a walk-in is counted, a code
nobody has is refused, the registration service's counts follow, and a moderator's session checks nobody
in. Needs the attendance API (the meetings branch): it fails on a main without it."""

from __future__ import annotations

from tests.console.conftest import StaffClient, System, unique, working_group


async def _attendance(system: System, client: StaffClient, wg: str) -> dict:
    backend = system.console.app.state.backend
    from services.console.backend import Caller
    from services.console.domain import Person

    answer = await backend.call(
        Caller(Person("staff.door", "Door", frozenset({"staff"}))),
        "registration",
        "GET",
        f"/v1/working-groups/{wg}/meetings/1/attendance",
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_checking_in_at_the_door(system: System) -> None:
    wg = await working_group(system, "Arbeit und Ausbildung")
    subject = unique("empfang")
    system.set_user(subject, "Empfang", ["staff"])
    door = StaffClient(system)
    await door.sign_in(subject)
    page = f"/groups/{wg}/meetings/1/check-in"
    first = await door.get(page)
    assert first.status_code == 200
    # A walk-in is counted.
    walk_in = await door.post(
        page,
        {"csrf": await door.csrf(page), "walk_in": "1", "participant_type": "resident", "language": "ar"},
    )
    assert walk_in.status_code == 200, walk_in.text[:2000]
    # A code nobody has is refused, and says so.
    wrong = await door.post(page, {"csrf": await door.csrf(page), "check_in_code": "ZZZZ-ZZZZ"})
    assert wrong.status_code == 422
    counts = (await _attendance(system, door, wg))["counts"]
    assert counts["walk_ins"] == 1
    # A moderator's session checks nobody in, neither through the page nor through the service.
    moderator = unique("moderator")
    system.set_user(moderator, "M", ["moderator"])
    other = StaffClient(system)
    await other.sign_in(moderator)
    assert (await other.get(page)).status_code == 403
    refused = await other.post(
        page,
        {"csrf": await other.csrf("/"), "walk_in": "1", "participant_type": "resident", "language": "de"},
    )
    assert refused.status_code == 403
    assert (await _attendance(system, door, wg))["counts"]["walk_ins"] == 1
    await door.close()
    await other.close()
