"""A working group's whole story (issue 24), across the three services and against real Postgres, RabbitMQ
and SMTP: people register and confirm; at the door staff check one in by the code on her confirmation mail
and count a walk-in; the minutes are published and mailed to who came; a resident's proposal is published
and adopted; a measure grows from it, a follower confirms by double opt-in, the council decides, and five
years of quarterly progress follow until it is done. Every mail arrives once, and the open data carries the
attendance counts, the proposal's outcome and the measure's timeline without anybody's name or address."""

from __future__ import annotations

import asyncio
import re
from datetime import date

from services.notification.app import create_app as notification_app
from services.proposals.app import create_app as proposals_app
from services.registration import catalog
from services.registration.app import create_app as registration_app
from tests.conftest import registration_body, running, unique_email
from tests.e2e.test_journey import token_from
from tests.support.catalog import create_working_group
from tests.support.staff import auth
from tests.support.wait import eventually

YEARS = 5


def _text(mail) -> str:
    return mail.message.get_body(("plain",)).get_content()


async def test_registration_check_in_minutes_proposal_council_decision_and_five_years_of_progress(
    registration_settings, proposals_settings, notification_settings, smtp
):
    reg_app = registration_app(registration_settings.model_copy(update={"rate_limit_per_minute": 0}))
    prop_app = proposals_app(proposals_settings.model_copy(update={"rate_limit_per_minute": 0}))
    staff = auth(registration_settings, "staff")
    moderator = auth(proposals_settings, "moderator")
    async with (
        running(reg_app) as registration,
        running(prop_app) as proposals,
        running(notification_app(notification_settings)),
    ):
        # The catalog: a working group, published to the proposals service by its event.
        wg = await create_working_group(reg_app.state.runtime)
        async with reg_app.state.runtime.transaction() as conn:
            await catalog.publish_working_group(conn, wg, changed=False)

        async def known_to_proposals() -> bool:
            answer = await proposals.post(
                "/v1/proposals",
                json={
                    "working_group_id": wg, "district_id": "innenstadt-ost", "language": "de",
                    "title": "Sprachcafé im Stadtteiltreff", "privacy_consent": True,
                    "body": "Ein offenes Sprachcafé jeden Mittwoch, für alle, die Deutsch üben möchten.",
                    "author_name": "Oleh", "author_email": author,
                },
            )  # fmt: skip
            if answer.status_code == 202:
                proposal_ids.append(answer.json()["id"])
                return True
            return False

        # Two residents register and confirm; one of them will come.
        ayse, ivan = unique_email("ayse"), unique_email("ivan")
        tokens = {}
        for email, language in ((ayse, "tr"), (ivan, "ru")):
            body = registration_body(working_group_id=wg, email=email, language=language)
            assert (await registration.post("/v1/registrations", json=body)).status_code == 202
            tokens[email] = token_from((await smtp.wait_for(email))[0])
            confirmed = await registration.post("/v1/registrations/confirm", json={"token": tokens[email]})
            assert confirmed.json()["status"] == "confirmed"
        confirmation = (await smtp.wait_for(ayse, count=2))[1]
        code = (await registration.get("/v1/registrations/me", params={"token": tokens[ayse]})).json()[
            "check_in_code"
        ]
        assert code in _text(confirmation)

        # At the door: Ayşe by the code on her mail (typed loosely), a walk-in counted without a name.
        door = f"/v1/working-groups/{wg}/meetings/1/attendance"
        checked = await registration.post(
            door, json={"check_in_code": code.lower().replace("-", " ")}, headers=staff
        )
        assert checked.status_code == 200, checked.text
        again = await registration.post(door, json={"check_in_code": code}, headers=staff)
        assert again.json()["repeated"] is True
        walk_in = {"walk_in": {"participant_type": "resident", "language": "uk"}}
        assert (await registration.post(door, json=walk_in, headers=staff)).status_code == 200
        counts = (await registration.get(door, headers=staff)).json()["counts"]
        assert (counts["registered"], counts["present"], counts["no_show"], counts["walk_ins"]) == (2, 2, 1, 1)

        # The minutes, published: a mail to who came (Ayşe, in Turkish), none to Ivan.
        minutes = f"/v1/working-groups/{wg}/meetings/1/minutes"
        put = await registration.put(
            minutes, json={"summary_md": "## Ergebnisse\n\n- Sprachcafé", "publish": True}, headers=staff
        )
        assert put.status_code == 200, put.text
        minutes_mail = (await smtp.wait_for(ayse, count=3))[2]
        assert minutes_mail.message["Content-Language"] == "tr" and minutes in _text(minutes_mail)
        assert (await registration.get(minutes)).json()["version"] == 1

        # A proposal, once the proposals service knows the working group; published and adopted.
        author, follower = unique_email("oleh"), unique_email("olga")
        proposal_ids: list[str] = []
        await eventually(known_to_proposals, "the proposals service learns the working group")
        pid = proposal_ids[0]
        published = await proposals.post(
            f"/v1/moderation/proposals/{pid}/decision",
            json={"decision": "publish"},
            headers={**moderator, "If-Match": "1"},
        )
        assert published.status_code == 200, published.text
        adopted = await proposals.post(
            f"/v1/moderation/proposals/{pid}/outcome",
            json={"outcome": "adopted", "public_statement": "Die Arbeitsgruppe übernimmt den Vorschlag."},
            headers=moderator,
        )
        assert adopted.status_code == 200, adopted.text
        await smtp.wait_for(author, count=3)  # receipt, published, outcome

        # The measure, a follower by double opt-in, the council's decision.
        created = await proposals.post(
            "/v1/measures",
            json={
                "working_group_id": wg, "district_id": "innenstadt-ost", "proposal_ids": [pid],
                "title": "Sprachcafés in den Stadtteilen",
                "description": "Drei Sprachcafés in Stadtteiltreffs, betreut von Ehrenamtlichen.",
            },
            headers=moderator,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        measure = created.json()["id"]
        follow = await proposals.post(
            f"/v1/measures/{measure}/followers", json={"email": follower, "language": "ru"}
        )
        assert follow.status_code == 202
        token = re.search(r"confirm\?token=([A-Za-z0-9_\-]+)", _text((await smtp.wait_for(follower))[0]))
        assert token is not None
        assert (
            await proposals.post("/v1/measures/followers/confirm", params={"token": token.group(1)})
        ).json()["confirmed"] is True
        decision = {
            "decided_on": "2027-03-15", "reference": "0123/2027", "decision": "adopted",
            "public_statement": "Der Rat beschließt die Maßnahme.",
        }  # fmt: skip
        decided = await proposals.post(f"/v1/measures/{measure}/council-decision", json=decision, headers=moderator)
        assert decided.status_code == 200, decided.text

        # Five years of progress, quarter by quarter, then done.
        entries = [("planned", date(2027, 4, 1))] + [
            ("in_progress", date(2027 + q // 4, 1 + 3 * (q % 4), 15)) for q in range(1, 4 * YEARS)
        ]
        entries.append(("done", date(2027 + YEARS, 3, 31)))
        for status, on in entries:
            answer = await proposals.post(
                f"/v1/measures/{measure}/progress",
                json={"status": status, "on": on.isoformat(), "public_statement": f"Stand {on:%m/%Y}."},
                headers=moderator,
            )
            assert answer.status_code == 200, answer.text
        late = {"status": "in_progress", "on": "2032-06-01", "public_statement": "Noch etwas."}
        assert (await proposals.post(f"/v1/measures/{measure}/progress", json=late, headers=moderator)).status_code == 409

        # Each of them is told once of the decision and of every entry.
        told = 1 + len(entries)
        await smtp.wait_for(author, count=3 + told)
        await smtp.wait_for(follower, count=1 + told)
        await asyncio.sleep(2)  # room for a duplicate to arrive
        assert len(smtp.handler.to(author)) == 3 + told
        assert len(smtp.handler.to(follower)) == 1 + told
        assert len(smtp.handler.to(ayse)) == 3 and len(smtp.handler.to(ivan)) == 2
        last = smtp.handler.to(follower)[-1].message
        assert last["Content-Language"] == "ru" and last["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # The public story: the measure with its decision and timeline; the proposal names the measure.
        view = (await proposals.get(f"/v1/measures/{measure}")).json()
        assert view["status"] == "done" and view["council_decision"]["reference"] == "0123/2027"
        assert len(view["timeline"]) == len(entries)
        assert [m["id"] for m in (await proposals.get(f"/v1/proposals/{pid}")).json()["measures"]] == [measure]

        # Open data: the counts of the meeting arrive by event; no name or address anywhere.
        async def attendance_published() -> dict | None:
            items = (await proposals.get("/v1/open-data/attendance.json")).json()["items"]
            return next((a for a in items if a["working_group_id"] == wg and a["present"] == 2), None)

        row = await eventually(attendance_published, "the meeting's counts in the open data")
        assert row["walk_ins"] == 1
        opened = [
            (await proposals.get(f"/v1/open-data/{name}.json")).text
            for name in ("proposals", "measures", "attendance")
        ]
        assert any(pid in text for text in opened) and any(measure in text for text in opened)
        for text in opened:
            for personal in (ayse, ivan, author, follower, "Oleh", code):
                assert personal.lower() not in text.lower()
